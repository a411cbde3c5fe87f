//! Key sets: parsing hostile JWKS documents into ready-to-use keys, and keeping them fresh.

mod keys;
mod store;

pub use keys::{KeyOrigin, KeySet, SkippedKey, VerificationKey, parse_jwks};
pub use store::{FetchOutcome, FetchReport, FetchRequest, JwksStore, ProviderKeys};
