//! The invariants that fit a unit test, over generated inputs (the fuzz targets explore the
//! same properties with coverage feedback; these run on every `make test`).

use proptest::collection::vec;
use proptest::prelude::*;

use super::{credential, lifecycle, path, serving_body};

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn the_lifecycle_never_admits_loses_or_double_records_a_stream(data in vec(any::<u8>(), 0..240)) {
        lifecycle::check(&data);
    }

    #[test]
    fn a_normalised_path_is_a_fixed_point(raw in "(/([a-zA-Z0-9._~-]|%[0-9a-fA-F]{2}|[;:@!$&'()*+,=]|\\.\\.?){0,5}){0,6}(\\?[a-z=&%/.]{0,6})?") {
        path(raw.as_bytes());
    }

    #[test]
    fn one_credential_or_a_refusal(
        choice in any::<u8>(),
        lines in vec("(authorization|proxy-authorization|x-api-token|x_api_token|Authorization|accept):( ?(Bearer|bearer|Basic|Token) )?[A-Za-z0-9._~+/=, -]{0,40}", 0..4),
        query in proptest::option::of("access_token=[A-Za-z0-9._%=-]{0,30}(&access_token=[a-z.]{0,9})?"),
    ) {
        let mut text = lines.join("\n");
        if let Some(query) = query {
            text.push_str(&format!("\n?{query}"));
        }
        let mut data = vec![choice];
        data.extend_from_slice(text.as_bytes());
        credential(&data);
    }

    #[test]
    fn the_serving_endpoint_is_the_model_every_reader_sees(
        small in any::<bool>(),
        body in "\\{ ?(\"(model|messages|mod\\\\u0065l)\" ?: ?(\"[a-z.\\\\-]{0,8}\"|\\[\\]|1|null) ?,? ?){0,3}\\}",
    ) {
        let mut data = vec![u8::from(!small)];
        data.extend_from_slice(body.as_bytes());
        serving_body(&data);
    }
}
