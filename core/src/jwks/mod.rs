//! Key sets: parsing hostile JWKS documents into ready-to-use keys, and keeping them fresh.

pub mod der;
mod discovery;
mod keys;
mod location;
pub mod schedule;
/// Shared data, as the key store uses it (kept at this path for callers).
pub mod shared {
    pub use crate::shared_data::*;
}
mod source;
mod store;

pub use crate::UnixMillis;
pub use discovery::jwks_location_from;
pub use keys::{
    KeyMaterial, KeyOrigin, KeySet, MAX_KEYS_WITHOUT_KID, SkippedKey, VerificationKey, parse_jwks,
};
pub use location::FetchLocation;
pub use source::{JwksLocation, JwksSource, KeySources, ProviderKeys, RemoteJwks};
pub use store::{Availability, FetchOutcome, FetchRequest, JwksStore, KidMiss, StoreEvent};
