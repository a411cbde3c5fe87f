//! `brickgate`: the plugin's decision code on the command line.
//!
//! - `brickgate check CONFIG` validates a configuration as the plugin does and prints the
//!   compiled rule table (catalogue included);
//! - `brickgate explain --config CONFIG --token TOKEN [...] PATH` replays one request and prints
//!   each check in order, then the answer;
//! - `brickgate route [--config CONFIG] METHOD PATH` prints the rule and scopes a request needs.
//!
//! CONFIG is any file that holds the plugin configuration (`loader`). Every command takes
//! `--json` and `--help`; exit codes are in [`EXIT_CODES`].

mod args;
mod check;
mod describe;
mod explain;
mod json;
mod keys;
mod loader;
mod output;
mod route;
mod transcript;

use std::process::ExitCode;

/// What a command concluded.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    Allowed,
    Refused,
    /// The answer depends on signing keys that could not be fetched: not a policy refusal.
    KeysUnavailable,
}

impl Outcome {
    pub fn exit_code(&self) -> u8 {
        match self {
            Outcome::Allowed => 0,
            Outcome::Refused => 1,
            Outcome::KeysUnavailable => 3,
        }
    }
}

/// Exit status for bad input: usage, an unreadable file, an invalid configuration.
pub const BAD_INPUT: u8 = 2;

pub const EXIT_CODES: &str = "\
exit codes:
  0    allowed (check: the configuration is valid; route: the request can be allowed)
  1    refused by the policy
  2    bad input: usage, an unreadable file, an invalid configuration
  3    the signing keys could not be fetched (explain), so nothing was decided on them
  4    internal error (stdout could not be written)
  141  stdout was closed by its reader (`| head`); the output stops there";

const CONFIG_FILES: &str = "\
CONFIG is the plugin JSON, an Envoy bootstrap or ECDS TypedExtensionConfig (YAML or JSON; a
filter configured from a watched file is read from it), an Istio WasmPlugin or an Envoy Gateway
EnvoyExtensionPolicy. A file with several Wasm filters needs --filter NAME.";

const CHECK: &str = "\
usage: brickgate check [--filter NAME] [--json] CONFIG
Validates CONFIG as the plugin does and prints the compiled rule table.";

const EXPLAIN: &str = "\
usage: brickgate explain --config CONFIG --token TOKEN|@FILE|- [--method M] [--body FILE]
                         [--header NAME:VALUE]... [--jwks FILE] [--now UNIX_SECONDS]
                         [--filter NAME] [--json] PATH
Replays one request through the plugin's decision code: each check in order, the answer and the
audit record. --header adds a request header (repeatable: Origin, X-Forwarded-For, a second
credential). The token is never printed: its fingerprint stands in.";

const ROUTE: &str = "\
usage: brickgate route [--config CONFIG] [--filter NAME] [--body FILE] [--json] METHOD PATH
Prints the rule a request falls under and the scopes it needs (without CONFIG: the Databricks
route catalogue alone).";

pub const USAGE: &str = "\
usage:
  brickgate check [--filter NAME] [--json] CONFIG
  brickgate explain --config CONFIG --token TOKEN|@FILE|- [--method M] [--body FILE]
                    [--header NAME:VALUE]... [--jwks FILE] [--now UNIX_SECONDS]
                    [--filter NAME] [--json] PATH
  brickgate route [--config CONFIG] [--filter NAME] [--body FILE] [--json] METHOD PATH
  brickgate help [COMMAND] | COMMAND --help | --version";

/// The help text of `command`, or of the whole tool.
fn help(command: Option<&str>) -> Option<String> {
    let body = match command {
        None => USAGE,
        Some("check") => CHECK,
        Some("explain") => EXPLAIN,
        Some("route") => ROUTE,
        Some(_) => return None,
    };
    Some(format!("{body}\n\n{CONFIG_FILES}\n\n{EXIT_CODES}"))
}

fn version() -> String {
    format!(
        "brickgate {} (core {})",
        env!("CARGO_PKG_VERSION"),
        brickgate_core::VERSION
    )
}

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    ExitCode::from(run(&argv))
}

fn run(argv: &[String]) -> u8 {
    let rest = argv.get(1..).unwrap_or_default();
    let command = argv.first().map(String::as_str);
    let result = match command {
        Some(name @ ("check" | "explain" | "route")) => match args::parse(rest) {
            Ok(parsed) if parsed.help => {
                output::line(&help(Some(name)).unwrap_or_default());
                return 0;
            }
            Ok(parsed) => match name {
                "check" => check::run(&parsed),
                "explain" => explain::run(&parsed),
                _ => route::run(&parsed),
            },
            Err(problem) => Err(format!(
                "{problem}\n{}",
                help(Some(name)).unwrap_or_default()
            )),
        },
        Some("help" | "-h" | "--help") => match help(rest.first().map(String::as_str)) {
            Some(text) => {
                output::line(&text);
                return 0;
            }
            None => Err(format!("no such command\n{USAGE}")),
        },
        Some("--version" | "-V" | "version") => {
            output::line(&version());
            return 0;
        }
        _ => Err(format!(
            "unknown or missing command\n{USAGE}\n\n{EXIT_CODES}"
        )),
    };
    match result {
        Ok(outcome) => outcome.exit_code(),
        Err(problem) => {
            output::error_line(&format!("brickgate: {problem}"));
            BAD_INPUT
        }
    }
}

#[cfg(test)]
mod tests;
