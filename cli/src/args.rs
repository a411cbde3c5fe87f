//! Command-line arguments: `--flag VALUE` options, `--json` and `--help` switches, a repeatable
//! `--header`, and positionals. Hand-written: three commands and a dozen flags do not need an
//! argument-parsing crate.

use std::collections::BTreeMap;

use brickgate_core::config::Config;

use crate::loader;

pub struct Args {
    pub flags: BTreeMap<String, String>,
    /// `--header NAME:VALUE`, in the order given (the only flag that may repeat).
    pub headers: Vec<String>,
    /// `--json`.
    pub json: bool,
    /// `--help` or `-h`.
    pub help: bool,
    pub positional: Vec<String>,
}

const FLAGS: [&str; 7] = ["config", "token", "method", "body", "jwks", "now", "filter"];
const SWITCHES: [&str; 2] = ["json", "help"];

pub fn parse(argv: &[String]) -> Result<Args, String> {
    let mut args = Args {
        flags: BTreeMap::new(),
        headers: Vec::new(),
        json: false,
        help: false,
        positional: Vec::new(),
    };
    let mut rest = argv.iter();
    while let Some(arg) = rest.next() {
        if arg == "-h" {
            args.help = true;
            continue;
        }
        let Some(name) = arg.strip_prefix("--") else {
            args.positional.push(arg.clone());
            continue;
        };
        let (name, inline) = match name.split_once('=') {
            Some((name, value)) => (name, Some(value)),
            None => (name, None),
        };
        if SWITCHES.contains(&name) {
            if inline.is_some() {
                return Err(format!("--{name} takes no value"));
            }
            match name {
                "json" => args.json = true,
                _ => args.help = true,
            }
            continue;
        }
        if name != "header" && !FLAGS.contains(&name) {
            return Err(format!("unknown option --{name}"));
        }
        let value = match inline {
            Some(value) => value.to_string(),
            None => rest
                .next()
                .ok_or_else(|| format!("--{name} needs a value"))?
                .clone(),
        };
        if name == "header" {
            args.headers.push(value);
        } else if args.flags.insert(name.to_string(), value).is_some() {
            return Err(format!("--{name} given twice"));
        }
    }
    Ok(args)
}

impl Args {
    pub fn flag(&self, name: &str) -> Option<&str> {
        self.flags.get(name).map(String::as_str)
    }

    pub fn required(&self, name: &str) -> Result<&str, String> {
        self.flag(name)
            .ok_or_else(|| format!("--{name} is required"))
    }

    /// Exactly `count` positionals, named in the error.
    pub fn positionals(&self, names: &[&str]) -> Result<&[String], String> {
        if self.positional.len() == names.len() {
            Ok(&self.positional)
        } else {
            Err(format!(
                "expected {} ({}), got {} argument(s)",
                names.len(),
                names.join(" "),
                self.positional.len(),
            ))
        }
    }
}

pub fn read_file(path: &str, what: &str) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("cannot read {what} {path}: {e}"))
}

/// The configuration, compiled exactly as the plugin compiles it, from whatever file holds it
/// (`loader`); secrets named by environment variables are read as the plugin's VM would see
/// them, from this process's environment.
pub fn load_config(args: &Args, path: &str) -> Result<Config, String> {
    load_config_and_host(args, path).map(|(config, _)| config)
}

/// The configuration, and what the file shows of the Envoy filter that runs it.
pub fn load_config_and_host(args: &Args, path: &str) -> Result<(Config, loader::Host), String> {
    let loaded = loader::load(path, args.flag("filter"))?;
    let config = Config::from_json_with_env(&loaded.plugin_config, &|name| loaded.env.lookup(name))
        .map_err(|e| format!("invalid configuration in {path} ({}): {e}", loaded.origin))?;
    Ok((config, loaded.host))
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
        let cases: [(&[&str], &str); 5] = [
            (&["--token"], "--token needs a value"),
            (&["--bogus", "x"], "unknown option --bogus"),
            (&["--jwks", "a", "--jwks", "b"], "--jwks given twice"),
            (&["--json=yes"], "--json takes no value"),
            (&["--header"], "--header needs a value"),
        ];
        for (words, problem) in cases {
            let error = parse(&argv(words)).err().unwrap_or_default();
            assert!(error.contains(problem), "{words:?}: {error}");
        }
        let args = parse(&argv(&["a", "b"])).unwrap();
        assert!(args.positionals(&["PATH"]).is_err());
        assert!(args.required("config").is_err());
    }

    #[test]
    fn header_repeats_and_switches_take_no_value() {
        let args = parse(&argv(&[
            "--header",
            "Origin: https://a.example",
            "--json",
            "--header=X-Forwarded-For:10.0.0.1",
            "-h",
            "/x",
        ]))
        .unwrap();
        assert_eq!(
            args.headers,
            ["Origin: https://a.example", "X-Forwarded-For:10.0.0.1"]
        );
        assert!(args.json && args.help);
        assert_eq!(args.positional, ["/x"]);
        let plain = parse(&argv(&["/x"])).unwrap();
        assert!(!plain.json && !plain.help && plain.headers.is_empty());
    }
}
