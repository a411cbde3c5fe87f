//! Key sets: parsing hostile JWKS documents into ready-to-use keys, and keeping them fresh.

pub mod der;
mod discovery;
mod keys;
mod location;
pub mod schedule;
pub mod shared;
mod store;

pub use discovery::jwks_location_from;
pub use keys::{
    KeyMaterial, KeyOrigin, KeySet, MAX_KEYS_WITHOUT_KID, SkippedKey, VerificationKey, parse_jwks,
};
pub use location::FetchLocation;
pub use store::{
    Availability, FetchOutcome, FetchRequest, JwksStore, KidMiss, StoreEvent, UnixMillis,
};
