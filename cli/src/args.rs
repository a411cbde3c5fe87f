//! Command-line arguments: a handful of `--flag VALUE` options and positionals. Hand-written:
//! three commands and six flags do not need an argument-parsing crate.

use std::collections::BTreeMap;

use brickgate_core::config::Config;

pub struct Args {
    pub flags: BTreeMap<String, String>,
    pub positional: Vec<String>,
}

const FLAGS: [&str; 6] = ["config", "token", "method", "body", "jwks", "now"];

pub fn parse(argv: &[String]) -> Result<Args, String> {
    let mut flags = BTreeMap::new();
    let mut positional = Vec::new();
    let mut rest = argv.iter();
    while let Some(arg) = rest.next() {
        if let Some(name) = arg.strip_prefix("--") {
            let (name, value) = match name.split_once('=') {
                Some((name, value)) => (name.to_string(), value.to_string()),
                None => {
                    let value = rest
                        .next()
                        .ok_or_else(|| format!("--{name} needs a value"))?;
                    (name.to_string(), value.clone())
                }
            };
            if !FLAGS.contains(&name.as_str()) {
                return Err(format!("unknown option --{name}\n{}", crate::USAGE));
            }
            if flags.insert(name.clone(), value).is_some() {
                return Err(format!("--{name} given twice"));
            }
        } else {
            positional.push(arg.clone());
        }
    }
    Ok(Args { flags, positional })
}

impl Args {
    pub fn flag(&self, name: &str) -> Option<&str> {
        self.flags.get(name).map(String::as_str)
    }

    pub fn required(&self, name: &str) -> Result<&str, String> {
        self.flag(name)
            .ok_or_else(|| format!("--{name} is required\n{}", crate::USAGE))
    }

    /// Exactly `count` positionals, named in the error.
    pub fn positionals(&self, names: &[&str]) -> Result<&[String], String> {
        if self.positional.len() == names.len() {
            Ok(&self.positional)
        } else {
            Err(format!(
                "expected {} ({}), got {} argument(s)\n{}",
                names.len(),
                names.join(" "),
                self.positional.len(),
                crate::USAGE
            ))
        }
    }
}

pub fn read_file(path: &str, what: &str) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("cannot read {what} {path}: {e}"))
}

/// The configuration, compiled exactly as the plugin compiles it; secrets named by
/// environment variables are read from this process's environment.
pub fn load_config(path: &str) -> Result<Config, String> {
    let bytes = read_file(path, "configuration")?;
    Config::from_json_with_env(&bytes, &|name| std::env::var(name).ok())
        .map_err(|e| format!("invalid configuration {path}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(words: &[&str]) -> Vec<String> {
        words.iter().map(|w| w.to_string()).collect()
    }

    #[test]
    fn flags_and_positionals_in_any_order() {
        let args = parse(&argv(&["--method", "post", "/x", "--config=c.json"])).unwrap();
        assert_eq!(args.flag("method"), Some("post"));
        assert_eq!(args.flag("config"), Some("c.json"));
        assert_eq!(args.positionals(&["PATH"]).unwrap(), ["/x"]);
    }

    #[test]
    fn bad_input_is_named() {
        #[rustfmt::skip]
        let cases: [(&[&str], &str); 3] = [
            (&["--token"], "--token needs a value"),
            (&["--bogus", "x"], "unknown option --bogus"),
            (&["--jwks", "a", "--jwks", "b"], "--jwks given twice"),
        ];
        for (words, problem) in cases {
            let error = parse(&argv(words)).err().unwrap_or_default();
            assert!(error.contains(problem), "{words:?}: {error}");
        }
        let args = parse(&argv(&["a", "b"])).unwrap();
        assert!(args.positionals(&["PATH"]).is_err());
        assert!(args.required("config").is_err());
    }
}
