//! Key sets: parsing hostile JWKS documents into ready-to-use keys, and keeping them fresh.

pub mod der;
mod keys;
mod store;

pub use keys::{KeyMaterial, KeyOrigin, KeySet, SkippedKey, VerificationKey, parse_jwks};
pub use store::{FetchOutcome, FetchReport, FetchRequest, JwksStore, ProviderKeys};
