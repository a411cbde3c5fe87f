//! Minimal DER (X.690) encoding: public keys as SubjectPublicKeyInfo and ECDSA signatures as
//! `SEQUENCE { r INTEGER, s INTEGER }`, the forms the host's BoringSSL expects.

use crate::alg::KeyFamily;
use crate::jwks::KeyMaterial;

const OID_RSA_ENCRYPTION: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
const OID_EC_PUBLIC_KEY: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
const OID_P256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
const OID_P384: &[u8] = &[0x2b, 0x81, 0x04, 0x00, 0x22];

fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes: Vec<u8> = len
            .to_be_bytes()
            .into_iter()
            .skip_while(|b| *b == 0)
            .collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend(bytes);
    }
    out.extend_from_slice(content);
    out
}

/// A non-negative INTEGER from big-endian magnitude bytes.
fn unsigned_integer(magnitude: &[u8]) -> Vec<u8> {
    let trimmed: Vec<u8> = magnitude.iter().copied().skip_while(|b| *b == 0).collect();
    let mut content = Vec::with_capacity(trimmed.len() + 1);
    if trimmed.first().is_none_or(|b| b & 0x80 != 0) {
        content.push(0);
    }
    content.extend(trimmed);
    tlv(0x02, &content)
}

fn sequence(parts: &[Vec<u8>]) -> Vec<u8> {
    tlv(0x30, &parts.concat())
}

fn bit_string(content: &[u8]) -> Vec<u8> {
    tlv(0x03, &[&[0u8][..], content].concat())
}

/// SubjectPublicKeyInfo (RFC 5280 §4.1) for RSA and EC keys; `None` for other key types.
pub fn subject_public_key_info(family: KeyFamily, material: &KeyMaterial) -> Option<Vec<u8>> {
    match (family, material) {
        (KeyFamily::Rsa, KeyMaterial::Rsa { n, e }) => {
            let algorithm = sequence(&[tlv(0x06, OID_RSA_ENCRYPTION), vec![0x05, 0x00]]);
            let key = sequence(&[unsigned_integer(n), unsigned_integer(e)]);
            Some(sequence(&[algorithm, bit_string(&key)]))
        }
        (KeyFamily::EcP256 | KeyFamily::EcP384, KeyMaterial::Ec { point }) => {
            let curve = if family == KeyFamily::EcP256 {
                OID_P256
            } else {
                OID_P384
            };
            let algorithm = sequence(&[tlv(0x06, OID_EC_PUBLIC_KEY), tlv(0x06, curve)]);
            Some(sequence(&[algorithm, bit_string(point)]))
        }
        _ => None,
    }
}

/// JWS ECDSA signatures are raw `r || s` (RFC 7518 §3.4); BoringSSL wants DER. A signature
/// of the wrong length, or with r or s zero (CVE-2022-21449), is refused here.
pub fn ecdsa_raw_to_der(raw: &[u8], coordinate_bytes: usize) -> Option<Vec<u8>> {
    if raw.len() != 2 * coordinate_bytes {
        return None;
    }
    let (r, s) = raw.split_at(coordinate_bytes);
    if r.iter().all(|b| *b == 0) || s.iter().all(|b| *b == 0) {
        return None;
    }
    Some(sequence(&[unsigned_integer(r), unsigned_integer(s)]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_are_minimal_and_non_negative() {
        assert_eq!(unsigned_integer(&[0, 0, 5]), [0x02, 0x01, 0x05]);
        assert_eq!(unsigned_integer(&[0x80]), [0x02, 0x02, 0x00, 0x80]);
        assert_eq!(unsigned_integer(&[]), [0x02, 0x01, 0x00]);
    }

    #[test]
    fn long_lengths_use_the_long_form() {
        let encoded = tlv(0x04, &[7u8; 300]);
        assert_eq!(&encoded[..4], &[0x04, 0x82, 0x01, 0x2c]);
    }

    #[test]
    fn ecdsa_signature_conversion() {
        let mut raw = vec![1u8; 64];
        raw[32] = 0x80;
        let der = ecdsa_raw_to_der(&raw, 32).unwrap();
        assert_eq!(der[0], 0x30);
        assert_eq!(&der[2..4], &[0x02, 0x20]);
        assert_eq!(&der[36..39], &[0x02, 0x21, 0x00]);
        assert!(ecdsa_raw_to_der(&raw[..63], 32).is_none());
        assert!(ecdsa_raw_to_der(&[0u8; 64], 32).is_none());
    }
}
