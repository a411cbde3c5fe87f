//! JWKS parsing (RFC 7517). A JWKS is hostile input: a key that cannot be used is skipped with
//! a reason, never fatal for the set, and keys are turned into ready-to-use form once here,
//! never per request.

use serde_json::Value;

use crate::alg::{Alg, KeyFamily};
use crate::encoding::b64url_decode;
use crate::jwks::der;

const MAX_KEYS: usize = 100;
/// A token without `kid` is tried against at most this many keys (those that fit its `alg`,
/// keys published without `kid` first), so one request costs at most this many signature
/// checks. Envoy's jwt_authn tries every key; IdPs that omit `kid` publish one or two.
pub const MAX_KEYS_WITHOUT_KID: usize = 4;
const MAX_KID_BYTES: usize = 256;
const MIN_RSA_BITS: usize = 2048;
const MAX_RSA_BITS: usize = 8192;

/// Where keys come from: symmetric keys are only ever accepted from the configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyOrigin {
    Inline,
    Remote,
}

/// Key material in the form the in-wasm verifier consumes.
#[derive(Clone, PartialEq, Eq)]
pub enum KeyMaterial {
    /// Big-endian modulus and exponent, leading zeros removed.
    Rsa {
        n: Vec<u8>,
        e: Vec<u8>,
    },
    /// Uncompressed SEC1 point `04 || x || y`.
    Ec {
        point: Vec<u8>,
    },
    Ed25519 {
        x: Vec<u8>,
    },
    Hmac {
        secret: Vec<u8>,
    },
}

/// One public (or, inline only, symmetric) key, ready to verify: converted once, when the
/// key set changes, never per request.
#[derive(Clone)]
pub struct VerificationKey {
    pub kid: Option<String>,
    pub family: KeyFamily,
    /// The key's own `alg`, when it declares one: then only that algorithm may use it.
    pub alg: Option<Alg>,
    /// Secret length in bytes for `oct` keys (HMAC key-size rule), 0 otherwise.
    pub secret_len: usize,
    pub material: KeyMaterial,
    /// DER SubjectPublicKeyInfo for RSA and EC keys: what the host's `verify_signature` takes.
    pub spki_der: Option<Vec<u8>>,
}

impl std::fmt::Debug for VerificationKey {
    // Never print key material, even for symmetric keys.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerificationKey")
            .field("kid", &self.kid)
            .field("family", &self.family)
            .field("alg", &self.alg)
            .finish()
    }
}

impl VerificationKey {
    /// Why this key cannot verify `alg`, or `None` when it can.
    pub fn mismatch(&self, alg: Alg) -> Option<String> {
        if self.family != alg.key_family() {
            return Some(format!(
                "key is {:?}, {alg} needs {:?}",
                self.family,
                alg.key_family()
            ));
        }
        if let Some(own) = self.alg.filter(|own| *own != alg) {
            return Some(format!("key is declared for {own}, token uses {alg}"));
        }
        if alg.is_hmac() && self.secret_len < alg.min_hmac_key_bytes() {
            return Some(format!(
                "{alg} needs a secret of at least {} bytes",
                alg.min_hmac_key_bytes()
            ));
        }
        None
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedKey {
    pub kid: Option<String>,
    pub why: String,
}

#[derive(Debug, Clone, Default)]
pub struct KeySet {
    pub keys: Vec<VerificationKey>,
    pub skipped: Vec<SkippedKey>,
    /// Changes whenever the set's keys change; cached verifications from an older
    /// generation are discarded.
    pub generation: u64,
}

impl KeySet {
    pub fn kids(&self) -> Vec<String> {
        self.keys
            .iter()
            .map(|k| k.kid.clone().unwrap_or_else(|| "(no kid)".to_string()))
            .collect()
    }

    /// When more keys of one type than a token without `kid` is tried against are published
    /// without `kid`, some of them can never verify a token: why, for a log line and the
    /// `brickgate.jwks.keys_without_kid_capped` counter when the set is adopted.
    pub fn too_many_without_kid(&self) -> Option<String> {
        let mut counts: Vec<(KeyFamily, usize)> = Vec::new();
        for key in self.keys.iter().filter(|key| key.kid.is_none()) {
            match counts.iter_mut().find(|(family, _)| *family == key.family) {
                Some((_, count)) => *count += 1,
                None => counts.push((key.family, 1)),
            }
        }
        let (family, count) = counts
            .into_iter()
            .find(|(_, count)| *count > MAX_KEYS_WITHOUT_KID)?;
        Some(format!(
            "{count} {family:?} keys have no kid; a token without kid is tried against \
             {MAX_KEYS_WITHOUT_KID} of them only (publish a kid for each key)"
        ))
    }

    /// The keys a token may be checked against: the one named by `kid`, or without `kid`
    /// every key whose type fits `alg` (the caller bounds them: `MAX_KEYS_WITHOUT_KID`).
    pub fn candidates(&self, kid: Option<&str>, alg: Alg) -> Vec<&VerificationKey> {
        match kid {
            Some(kid) => self
                .keys
                .iter()
                .filter(|k| k.kid.as_deref() == Some(kid))
                .collect(),
            None => self
                .keys
                .iter()
                .filter(|k| k.mismatch(alg).is_none())
                .collect(),
        }
    }
}

/// Parses a JWKS document. Only a document that is not a JSON object with a `keys` array
/// is an error; individual keys that cannot be used are listed in `skipped`.
pub fn parse_jwks(document: &Value, origin: KeyOrigin) -> Result<KeySet, String> {
    let keys = document
        .get("keys")
        .and_then(Value::as_array)
        .ok_or_else(|| "not a JWKS: expected an object with a \"keys\" array".to_string())?;
    if keys.len() > MAX_KEYS {
        return Err(format!(
            "{} keys, at most {MAX_KEYS} are accepted",
            keys.len()
        ));
    }
    let mut set = KeySet::default();
    for jwk in keys {
        let kid = jwk.get("kid").and_then(Value::as_str).map(str::to_string);
        match parse_key(jwk, origin) {
            Ok(key) => set.keys.push(key),
            Err(why) => set.skipped.push(SkippedKey { kid, why }),
        }
    }
    Ok(set)
}

fn parse_key(jwk: &Value, origin: KeyOrigin) -> Result<VerificationKey, String> {
    let field = |name: &str| jwk.get(name).and_then(Value::as_str);
    let kid = match jwk.get("kid") {
        None => None,
        Some(Value::String(kid)) if kid.len() <= MAX_KID_BYTES => Some(kid.clone()),
        Some(_) => {
            return Err(format!(
                "kid is not a string of at most {MAX_KID_BYTES} bytes"
            ));
        }
    };
    if let Some(usage) = jwk.get("use").filter(|usage| *usage != "sig") {
        return Err(format!("use is {usage}, not \"sig\""));
    }
    if let Some(ops) = jwk.get("key_ops") {
        let verifies = ops
            .as_array()
            .is_some_and(|ops| ops.iter().any(|op| op == "verify"));
        if !verifies {
            return Err("key_ops does not include \"verify\"".to_string());
        }
    }
    let alg = match jwk.get("alg") {
        None => None,
        Some(Value::String(name)) => Some(
            Alg::parse(name).ok_or_else(|| format!("alg {name:?} is not a signature algorithm"))?,
        ),
        Some(_) => return Err("alg is not a string".to_string()),
    };
    let bytes = |name: &str| -> Result<Vec<u8>, String> {
        let text = field(name).ok_or_else(|| format!("missing \"{name}\""))?;
        b64url_decode(text).ok_or_else(|| format!("\"{name}\" is not base64url"))
    };
    let kty = field("kty").ok_or("missing \"kty\"")?;
    let (family, material) = match kty {
        "RSA" => {
            let n = strip_leading_zeros(bytes("n")?);
            let e = strip_leading_zeros(bytes("e")?);
            let bits = significant_bits(&n);
            if !(MIN_RSA_BITS..=MAX_RSA_BITS).contains(&bits) {
                return Err(format!(
                    "RSA modulus of {bits} bits (accepted: {MIN_RSA_BITS} to {MAX_RSA_BITS})"
                ));
            }
            if e.is_empty() || e.len() > 4 || e == [1] {
                return Err("RSA exponent out of range".to_string());
            }
            (KeyFamily::Rsa, KeyMaterial::Rsa { n, e })
        }
        "EC" => {
            let (family, size) = match field("crv") {
                Some("P-256") => (KeyFamily::EcP256, 32),
                Some("P-384") => (KeyFamily::EcP384, 48),
                other => return Err(format!("EC curve {other:?} is not supported")),
            };
            let (x, y) = (bytes("x")?, bytes("y")?);
            if x.len() != size || y.len() != size {
                return Err(format!("EC coordinates must be {size} bytes"));
            }
            let point = [&[4u8][..], &x, &y].concat();
            (family, KeyMaterial::Ec { point })
        }
        "OKP" => {
            if field("crv") != Some("Ed25519") {
                return Err("OKP keys must use crv Ed25519".to_string());
            }
            let x = bytes("x")?;
            if x.len() != 32 {
                return Err("Ed25519 public keys are 32 bytes".to_string());
            }
            (KeyFamily::Ed25519, KeyMaterial::Ed25519 { x })
        }
        "oct" if origin == KeyOrigin::Remote => {
            return Err("symmetric keys are only accepted from the configuration".to_string());
        }
        "oct" => {
            let secret = bytes("k")?;
            // A secret too short for every algorithm it may serve could never verify a token.
            let needed = alg.map_or(Alg::HS256.min_hmac_key_bytes(), Alg::min_hmac_key_bytes);
            if secret.len() < needed {
                return Err(format!(
                    "symmetric key of {} bytes; {} needs at least {needed}",
                    secret.len(),
                    alg.filter(|alg| alg.is_hmac()).unwrap_or(Alg::HS256)
                ));
            }
            (KeyFamily::Hmac, KeyMaterial::Hmac { secret })
        }
        other => return Err(format!("kty {other:?} is not supported")),
    };
    let secret_len = match &material {
        KeyMaterial::Hmac { secret } => secret.len(),
        _ => 0,
    };
    let spki_der = der::subject_public_key_info(family, &material);
    if let Some(alg) = alg.filter(|alg| alg.key_family() != family) {
        return Err(format!("alg {alg} does not fit kty {kty}"));
    }
    Ok(VerificationKey {
        kid,
        family,
        alg,
        secret_len,
        material,
        spki_der,
    })
}

fn strip_leading_zeros(mut bytes: Vec<u8>) -> Vec<u8> {
    let zeros = bytes.iter().take_while(|b| **b == 0).count();
    bytes.drain(..zeros);
    bytes
}

fn significant_bits(big_endian: &[u8]) -> usize {
    let mut rest = big_endian.iter().skip_while(|b| **b == 0);
    match rest.next() {
        None => 0,
        Some(first) => (8 - first.leading_zeros() as usize) + 8 * rest.count(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rsa_n(bits: usize) -> String {
        let mut n = vec![0xC5u8; bits / 8];
        n[0] = 0xB1;
        base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, n)
    }

    const EC_X: &str = "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU";
    const EC_Y: &str = "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0";

    #[test]
    fn usable_keys_are_kept_and_bad_ones_skipped_with_a_reason() {
        let document = json!({"keys": [
            {"kty": "RSA", "kid": "good-rsa", "alg": "RS256", "use": "sig", "n": rsa_n(2048), "e": "AQAB"},
            {"kty": "EC", "kid": "good-ec", "crv": "P-256", "x": EC_X, "y": EC_Y},
            {"kty": "RSA", "kid": "short", "n": rsa_n(1024), "e": "AQAB"},
            {"kty": "RSA", "kid": "enc", "use": "enc", "n": rsa_n(2048), "e": "AQAB"},
            {"kty": "RSA", "kid": "oaep", "alg": "RSA-OAEP", "n": rsa_n(2048), "e": "AQAB"},
            {"kty": "RSA", "kid": "padded", "n": format!("{}=", rsa_n(2048)), "e": "AQAB"},
            {"kty": "EC", "kid": "wrong-curve", "crv": "P-521", "x": EC_X, "y": EC_Y},
            {"kty": "EC", "kid": "ec-as-rsa", "alg": "RS256", "crv": "P-256", "x": EC_X, "y": EC_Y},
            {"kty": "oct", "kid": "remote-secret", "k": "c2VjcmV0"},
            {"kty": "RSA", "kid": "no-e", "n": rsa_n(2048)},
            {"kty": "XYZ", "kid": "alien"},
            "not an object",
            {"kty": "RSA", "kid": 7, "n": rsa_n(2048), "e": "AQAB"},
            {"kty": "RSA", "kid": "ops", "key_ops": ["encrypt"], "n": rsa_n(2048), "e": "AQAB"}
        ]});
        let set = parse_jwks(&document, KeyOrigin::Remote).unwrap();
        assert_eq!(set.kids(), vec!["good-rsa", "good-ec"]);
        assert_eq!(set.skipped.len(), 12);
        let why = |kid: &str| {
            set.skipped
                .iter()
                .find(|s| s.kid.as_deref() == Some(kid))
                .map(|s| s.why.clone())
                .unwrap()
        };
        assert!(why("short").contains("1024 bits"));
        assert!(why("remote-secret").contains("only accepted from the configuration"));
        assert!(why("ec-as-rsa").contains("does not fit"));
    }

    #[test]
    fn documents_without_a_keys_array_are_refused() {
        for document in [json!([]), json!({"keys": {}}), json!({}), json!("x")] {
            assert!(
                parse_jwks(&document, KeyOrigin::Remote).is_err(),
                "{document}"
            );
        }
    }

    #[test]
    fn too_many_keys_are_refused() {
        let keys: Vec<_> = (0..=MAX_KEYS).map(|_| json!({"kty": "XYZ"})).collect();
        assert!(parse_jwks(&json!({ "keys": keys }), KeyOrigin::Remote).is_err());
    }

    #[test]
    fn inline_symmetric_keys_carry_their_length_and_short_ones_are_skipped() {
        let b64 = |len: usize| {
            base64::Engine::encode(
                &base64::engine::general_purpose::URL_SAFE_NO_PAD,
                vec![7u8; len],
            )
        };
        // Found by the jwks fuzzer: a key no algorithm can use was kept.
        let set = parse_jwks(
            &json!({"keys": [
                {"kty": "oct", "kid": "six", "k": "c2VjcmV0"},
                {"kty": "oct", "kid": "hs512-short", "alg": "HS512", "k": b64(48)},
                {"kty": "oct", "kid": "ok", "k": b64(48)}
            ]}),
            KeyOrigin::Inline,
        )
        .unwrap();
        assert_eq!(set.kids(), ["ok"]);
        assert_eq!(
            set.skipped[0].why,
            "symmetric key of 6 bytes; HS256 needs at least 32"
        );
        assert_eq!(
            set.skipped[1].why,
            "symmetric key of 48 bytes; HS512 needs at least 64"
        );
        let key = &set.keys[0];
        assert_eq!(key.secret_len, 48);
        assert!(key.mismatch(Alg::HS384).is_none());
        assert!(
            key.mismatch(Alg::HS512)
                .unwrap()
                .contains("at least 64 bytes")
        );
        assert!(key.mismatch(Alg::RS256).is_some());
    }

    #[test]
    fn candidates_by_kid_or_by_type() {
        let document = json!({"keys": [
            {"kty": "RSA", "kid": "a", "n": rsa_n(2048), "e": "AQAB"},
            {"kty": "EC", "kid": "b", "crv": "P-256", "x": EC_X, "y": EC_Y},
        ]});
        let set = parse_jwks(&document, KeyOrigin::Remote).unwrap();
        assert_eq!(set.candidates(Some("b"), Alg::RS256).len(), 1);
        assert_eq!(set.candidates(Some("zzz"), Alg::RS256).len(), 0);
        assert_eq!(
            set.candidates(None, Alg::ES256)[0].kid.as_deref(),
            Some("b")
        );
    }

    #[test]
    fn modulus_bits_ignore_leading_zeros() {
        assert_eq!(significant_bits(&[0, 0, 1]), 1);
        assert_eq!(significant_bits(&[0x80, 0]), 16);
        assert_eq!(significant_bits(&[]), 0);
    }
}
