//! Who the verified caller is, as headers for the upstream and as an audit record.

pub mod audit;
pub mod grants;
mod headers;
mod principal;
mod verified;

pub use audit::{AuditRecord, AuditValue, fingerprint};
pub use headers::{header_value_safe, headers_to_strip, identity_headers};
pub use principal::{IdpKind, PrincipalKind, client_id, principal_kind};
pub use verified::{FederatedSubject, Holder, Verified};
