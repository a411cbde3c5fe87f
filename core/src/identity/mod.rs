//! Who the verified caller is, as headers for the upstream, as the principal published to the
//! filters after brickgate, and as an audit record.

pub mod audit;
pub mod grants;
mod headers;
mod principal;
mod published;
mod verified;

pub use audit::{AuditRecord, AuditValue, fingerprint};
pub use headers::{header_value_safe, headers_to_strip, identity_headers};
pub use principal::{IdpKind, PrincipalKind, client_id, principal_kind};
pub use published::{PUBLISHED_FIELDS, Principal};
pub use verified::{FederatedSubject, Holder, Verified};
