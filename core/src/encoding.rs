//! Strict base64url (RFC 7515 §2): no padding, no whitespace, canonical trailing bits.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// Decodes base64url, refusing padding, foreign characters and non-canonical encodings,
/// so two different strings can never decode to the same bytes.
pub fn b64url_decode(text: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(text).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strict_decoding() {
        assert_eq!(b64url_decode("aGk").unwrap(), b"hi");
        assert_eq!(b64url_decode("").unwrap(), b"");
        for bad in ["aGk=", "aG k", "aGl", "a+b/", "aGk\n", "a"] {
            assert!(b64url_decode(bad).is_none(), "{bad:?}");
        }
    }
}
