//! `brickgate`: the plugin's decision code on the command line.
//!
//! - `brickgate check CONFIG` validates a configuration as the plugin does and prints the
//!   compiled rule table (catalogue included);
//! - `brickgate explain --config CONFIG --token TOKEN [--method M] [--body FILE] [--jwks FILE] PATH`
//!   replays one request and prints each check in order, then the answer;
//! - `brickgate route [--config CONFIG] METHOD PATH` prints the rule and scopes a request needs.
//!
//! Exit codes: 0 allowed (or valid), 1 refused, 2 bad input.

mod args;
mod check;
mod describe;
mod explain;
mod keys;
mod route;
mod transcript;

use std::process::ExitCode;

/// What a command concluded.
pub enum Outcome {
    Allowed,
    Refused,
}

pub const USAGE: &str = "\
usage:
  brickgate check CONFIG
  brickgate explain --config CONFIG --token TOKEN|@FILE|- [--method M] [--body FILE] [--jwks FILE] [--now UNIX_SECONDS] PATH
  brickgate route [--config CONFIG] METHOD PATH

exit codes: 0 allowed (check: the configuration is valid), 1 refused, 2 bad input";

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let rest = argv.get(1..).unwrap_or_default();
    let result = match argv.first().map(String::as_str) {
        Some("check") => args::parse(rest).and_then(|a| check::run(&a)),
        Some("explain") => args::parse(rest).and_then(|a| explain::run(&a)),
        Some("route") => args::parse(rest).and_then(|a| route::run(&a)),
        Some("-h" | "--help" | "help") => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        _ => Err(format!("unknown or missing command\n{USAGE}")),
    };
    match result {
        Ok(Outcome::Allowed) => ExitCode::from(0),
        Ok(Outcome::Refused) => ExitCode::from(1),
        Err(problem) => {
            eprintln!("brickgate: {problem}");
            ExitCode::from(2)
        }
    }
}
