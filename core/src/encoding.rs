//! Strict base64url (RFC 7515 §2): no padding, no whitespace, canonical trailing bits; and the
//! hex digits of a percent-escape.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// Decodes base64url, refusing padding, foreign characters and non-canonical encodings,
/// so two different strings can never decode to the same bytes.
pub fn b64url_decode(text: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(text).ok()
}

/// The byte a `%XX` escape's two hex digits stand for (`hex` is what follows the `%`); `None`
/// unless both are hex digits (so `%+5` is no escape).
pub fn hex_byte(hex: &[u8]) -> Option<u8> {
    let digits = hex.get(..2)?;
    if !digits.iter().all(u8::is_ascii_hexdigit) {
        return None;
    }
    u8::from_str_radix(std::str::from_utf8(digits).ok()?, 16).ok()
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
