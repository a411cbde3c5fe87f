//! Test data shared by the path and engine tests.

/// How the Databricks SDKs put a Files API name in the path, for awkward but legal names:
/// databricks-sdk-py `_escape_multi_segment_path_parameter` is `urllib.parse.quote(param)`
/// (databricks/sdk/service/_internal.py at 9ae2241564f93eec8b747514cdef56439f77a077; `/` and
/// unreserved characters kept), databricks-sdk-go `EncodeMultiSegmentPathParameter` is
/// `url.PathEscape` per `/`-separated segment (httpclient/request.go at
/// 1ff3c785425fbb6ad4c96c50c538231fce761996; keeps `+`, escapes `;`, `,`, `?`). Each is read as
/// the name itself and forwarded exactly as the SDK sent it.
pub const SDK_FILE_NAMES: &[(&str, &str, &str)] = &[
    // (file name, Python SDK's encoding, Go SDK's encoding)
    ("my report.csv", "my%20report.csv", "my%20report.csv"),
    ("100%.csv", "100%25.csv", "100%25.csv"),
    ("a+b.csv", "a%2Bb.csv", "a+b.csv"),
    ("issue#7.txt", "issue%237.txt", "issue%237.txt"),
    ("why?.txt", "why%3F.txt", "why%3F.txt"),
    ("a;b.csv", "a%3Bb.csv", "a%3Bb.csv"),
    ("café.csv", "caf%C3%A9.csv", "caf%C3%A9.csv"),
    (
        "数据.csv",
        "%E6%95%B0%E6%8D%AE.csv",
        "%E6%95%B0%E6%8D%AE.csv",
    ),
    ("draft.", "draft.", "draft."),
    ("a,b=c@d.csv", "a%2Cb%3Dc%40d.csv", "a%2Cb=c@d.csv"),
];
