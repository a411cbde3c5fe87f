//! Which rule applies to a request, and whether a verified principal satisfies it.

mod index;
mod matcher;
mod path;
mod require;

pub use index::RuleIndex;
pub use matcher::{Access, Bindings, PathPattern, Rule, RuleConflict, Segment, match_rule};
#[cfg(test)]
pub use path::sdk_file_names::SDK_FILE_NAMES;
pub use path::{MAX_PATH_BYTES, NormalizedPath, normalize_path, suffix_readings};
pub use require::{Requirement, ScopeTemplate};
