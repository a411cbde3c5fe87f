//! The wire format of Envoy's `verify_signature` foreign function
//! (source/extensions/common/wasm/ext/verify_signature.proto), and a self-test that proves a
//! host implements it the way we use it before we trust it with traffic.

use serde_json::json;

use crate::alg::Alg;
use crate::encoding::b64url_decode;
use crate::jwks::der::ecdsa_raw_to_der;
use crate::jwks::{KeyOrigin, VerificationKey, parse_jwks};

/// The hash name the host expects, for the algorithms the host verifies natively (RSA-PSS and
/// EdDSA fail in Envoy 1.40's implementation, so they stay in wasm).
pub fn host_hash(alg: Alg) -> Option<&'static str> {
    match alg {
        Alg::RS256 | Alg::ES256 => Some("sha256"),
        Alg::RS384 | Alg::ES384 => Some("sha384"),
        Alg::RS512 => Some("sha512"),
        _ => None,
    }
}

/// The signature in the form the host verifies: RSA as is, ECDSA converted to DER.
pub fn host_signature(alg: Alg, raw: &[u8]) -> Option<Vec<u8>> {
    match alg {
        Alg::ES256 => ecdsa_raw_to_der(raw, 32),
        Alg::ES384 => ecdsa_raw_to_der(raw, 48),
        _ => Some(raw.to_vec()),
    }
}

fn varint(mut value: usize, out: &mut Vec<u8>) {
    while value >= 0x80 {
        out.push((value as u8 & 0x7f) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn length_delimited(field: u8, bytes: &[u8], out: &mut Vec<u8>) {
    out.push(field << 3 | 2);
    varint(bytes.len(), out);
    out.extend_from_slice(bytes);
}

/// `VerifySignatureArguments { hash_function = 1; public_key = 2; signature = 3; text = 4 }`.
pub fn encode_arguments(hash: &str, spki_der: &[u8], signature: &[u8], text: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(spki_der.len() + signature.len() + text.len() + 16);
    length_delimited(1, hash.as_bytes(), &mut out);
    length_delimited(2, spki_der, &mut out);
    length_delimited(3, signature, &mut out);
    length_delimited(4, text, &mut out);
    out
}

/// `VerifySignatureResult { bool result = 1; string error = 2; }` → (result, error).
pub fn decode_result(bytes: &[u8]) -> Option<(bool, String)> {
    let mut result = false;
    let mut error = String::new();
    let mut rest = bytes;
    while let Some((&tag, tail)) = rest.split_first() {
        match tag {
            0x08 => {
                let (&value, tail) = tail.split_first()?;
                result = value == 1;
                rest = tail;
            }
            0x12 => {
                let (&len, tail) = tail.split_first()?;
                let len = usize::from(len);
                if len >= 0x80 || tail.len() < len {
                    return None;
                }
                let (text, tail) = tail.split_at(len);
                error = String::from_utf8_lossy(text).into_owned();
                rest = tail;
            }
            _ => return None,
        }
    }
    Some((result, error))
}

const SELF_TEST_MESSAGE: &[u8] = b"brickgate host verify_signature self-test";
const RSA_N: &str = "wZFMUHyrffbyrrnvVxuLpl6Q7tvuxKZpgj_EqWB9YzgjDhlP62QSV-RhmXpYqUaep4pBlKaNhNEMms1Vw5k52NABUjP96UW16zaaOEQ8qN2drehDBxwYIC097nrUFpSl6TsgTKTw5yZdeIyQKqV9lN0r9RG8oP4XLX3iTB6ZrcLxXxORXIUUyCVGQy0ufzuzZp-bPUo3lY3U6aJoy7bcy9jJifCmAK79CuTu3-DTCaft40dyazoricfK2S4H9NDMFhWqsPg7Q3Ga96snTgY7yqX9etm4Tq-BrQrDSsD1kisDJlAhltB_XYFwW7KP6u0LWpO3HsPwhPuACipi2wuM4Q";
const RS_SIG: &str = "Ao0B2pKrdTuA7rkXNwsFGWQJg4o6se8T7lGcG50Vj2sFeS6s1QqWgTzKgYzqTQQ6Mu-N9f_AOjPphlF858rjZF-60h4wBcIgcEBggyUesjTVP97Oj1338WRadTTHu15fTxgzrUTa1GT1qIyKB5FJkrhRDF3f_qGemZQkrrFxVA-zGD7PDY_AF-AqqKL6QjiTYXF0Kjw66NwDPpr-wZe84RY32rqnx8vPRuk8QQiIu4V3M5qhvXXZC_BW2KfSv18tckCUU6I_6VpifJ-epUouBpG8LYnGhd4U3xJZkc5TZ3iBTiOe6lzUtaKy-kuS0sDUC1wUJR1XLmmGg8u_mbqL5Q";
const EC_X: &str = "YaCUTfPlU1DMXTQ3DbN89_ImdUX5unqzkMqAYFuoQIo";
const EC_Y: &str = "YUIcuUUtFMzx8Xssu9vpSegUk3ZPDvwk5ouUipdz1sY";
const ES_SIG: &str =
    "XOPKXrErJYncESGbPK69sBqLzadwu3kwaUYr0DzJuwW1YM43-FgDH7ngEjwSpWSycmzREM61DzwZh9IXptvxAA";

/// One self-test case: a host that verifies signatures must accept the genuine ones and
/// refuse the altered ones (public test vectors; no secrets).
pub struct SelfTestCase {
    pub alg: Alg,
    pub key: VerificationKey,
    pub message: &'static [u8],
    pub signature: Vec<u8>,
    pub expected: bool,
}

pub fn self_test_cases() -> Vec<SelfTestCase> {
    let keys = parse_jwks(
        &json!({"keys": [
            {"kty": "RSA", "n": RSA_N, "e": "AQAB"},
            {"kty": "EC", "crv": "P-256", "x": EC_X, "y": EC_Y},
        ]}),
        KeyOrigin::Remote,
    )
    .map(|set| set.keys)
    .unwrap_or_default();
    let mut cases = Vec::new();
    for (alg, key, signature) in [
        (Alg::RS256, keys.first(), RS_SIG),
        (Alg::ES256, keys.get(1), ES_SIG),
    ] {
        let (Some(key), Some(signature)) = (key, b64url_decode(signature)) else {
            continue;
        };
        let mut altered = signature.clone();
        if let Some(byte) = altered.get_mut(5) {
            *byte ^= 1;
        }
        for (signature, expected) in [(signature, true), (altered, false)] {
            cases.push(SelfTestCase {
                alg,
                key: key.clone(),
                message: SELF_TEST_MESSAGE,
                signature,
                expected,
            });
        }
    }
    cases
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::{InWasmVerifier, SignatureVerifier};

    #[test]
    fn self_test_vectors_are_right() {
        let cases = self_test_cases();
        assert_eq!(cases.len(), 4);
        for case in cases {
            let got = InWasmVerifier.verify(case.alg, &case.key, case.message, &case.signature);
            assert_eq!(got, case.expected, "{}", case.alg);
        }
    }

    #[test]
    fn arguments_are_length_delimited_protobuf() {
        let encoded = encode_arguments("sha256", &[1, 2], &[3; 200], b"t");
        assert_eq!(
            &encoded[..8],
            &[0x0a, 6, b's', b'h', b'a', b'2', b'5', b'6']
        );
        assert_eq!(&encoded[8..12], &[0x12, 2, 1, 2]);
        assert_eq!(&encoded[12..15], &[0x1a, 0xc8, 0x01]);
        assert_eq!(&encoded[encoded.len() - 3..], &[0x22, 1, b't']);
    }

    #[test]
    fn results_decode() {
        assert_eq!(decode_result(&[0x08, 0x01]), Some((true, String::new())));
        assert_eq!(decode_result(&[]), Some((false, String::new())));
        let failed = [&[0x12, 3][..], b"bad"].concat();
        assert_eq!(decode_result(&failed), Some((false, "bad".to_string())));
        assert_eq!(decode_result(&[0x12, 9, b'x']), None);
        assert_eq!(decode_result(&[0x99]), None);
    }

    #[test]
    fn only_rsa_pkcs1_and_ecdsa_go_to_the_host() {
        let native: Vec<Alg> = Alg::ALL
            .into_iter()
            .filter(|a| host_hash(*a).is_some())
            .collect();
        assert_eq!(
            native,
            [Alg::RS256, Alg::RS384, Alg::RS512, Alg::ES256, Alg::ES384]
        );
    }
}
