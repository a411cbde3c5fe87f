//! Everything the tool prints goes through here, never through `println!`: `println!` panics
//! when stdout is a closed pipe (`brickgate check big.yaml | head -1`), which Rust reports as
//! exit 101 or, with `panic = "abort"`, 134. A closed pipe means the reader has what it wants:
//! the tool stops at once, prints nothing more, and exits [`CLOSED_PIPE`], the status a shell
//! reports for a program that SIGPIPE ended (128 + 13), so `set -o pipefail` scripts see what
//! they see for `cat big | head -1`. Any other write failure (a full disk) is an internal error.

use std::io::Write;

/// Exit status when the reader closed stdout: 128 + SIGPIPE (13), as a shell reports a program
/// the signal ended.
pub const CLOSED_PIPE: u8 = 141;

/// Exit status for an internal failure (stdout could not be written for another reason).
pub const INTERNAL: u8 = 4;

/// `println!` through [`line`]: formats one line and writes it to stdout.
#[macro_export]
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::output::line(&format!($($arg)*))
    };
}

/// One line on stdout.
pub fn line(text: &str) {
    write_stdout(format!("{text}\n").as_bytes());
}

/// A JSON document on stdout, pretty-printed, then a newline.
pub fn document(value: &serde_json::Value) {
    match serde_json::to_string_pretty(value) {
        Ok(text) => line(&text),
        Err(e) => fail_internal(&format!("cannot render JSON: {e}")),
    }
}

/// A message on stderr. A closed stderr is ignored: nobody is left to read it.
pub fn error_line(text: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{text}");
}

fn write_stdout(bytes: &[u8]) {
    let mut stdout = std::io::stdout().lock();
    let written = stdout.write_all(bytes).and_then(|()| stdout.flush());
    match written {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {
            std::process::exit(i32::from(CLOSED_PIPE))
        }
        Err(e) => fail_internal(&format!("cannot write to stdout: {e}")),
    }
}

fn fail_internal(problem: &str) -> ! {
    error_line(&format!("brickgate: {problem}"));
    std::process::exit(i32::from(INTERNAL))
}
