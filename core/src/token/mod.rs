//! Finding the one bearer credential in a request, and taking a compact JWT apart strictly.

mod extract;
mod jwt;
mod strict_json;

pub use extract::{Credential, TokenSource, extract_credential};
pub use jwt::{JoseHeader, UnverifiedJwt};
pub use strict_json::parse_object_strict;
