//! Which rule applies to a request, and whether a verified principal satisfies it.

mod matcher;
mod path;
mod require;

pub use matcher::{Access, Bindings, PathPattern, Rule, Segment, match_rule};
pub use path::{NormalizedPath, normalize_path};
pub use require::{Requirement, ScopeTemplate};
