//! The command line itself: help, version and exit codes.

use super::*;

fn argv(words: &[&str]) -> Vec<String> {
    words.iter().map(|w| w.to_string()).collect()
}

#[test]
fn help_and_version_exit_zero_and_bad_usage_exits_two() {
    #[rustfmt::skip]
    let cases: [(&[&str], u8); 12] = [
        (&["--version"], 0),
        (&["-V"], 0),
        (&["help"], 0),
        (&["--help"], 0),
        (&["help", "check"], 0),
        (&["check", "--help"], 0),
        (&["explain", "-h"], 0),
        (&["route", "--help", "--bogus-is-not-read"], BAD_INPUT),
        (&["help", "nope"], BAD_INPUT),
        (&["check"], BAD_INPUT),
        (&[], BAD_INPUT),
        (&["bogus"], BAD_INPUT),
    ];
    for (words, code) in cases {
        assert_eq!(run(&argv(words)), code, "{words:?}");
    }
}

#[test]
fn each_command_has_its_own_help_with_the_exit_codes() {
    for command in ["check", "explain", "route"] {
        let text = help(Some(command)).unwrap_or_default();
        assert!(
            text.starts_with(&format!("usage: brickgate {command}")),
            "{text}"
        );
        assert!(
            text.contains("exit codes:") && text.contains("3    the signing keys"),
            "{text}"
        );
    }
    assert!(
        help(Some("explain"))
            .unwrap_or_default()
            .contains("[--header NAME:VALUE]...")
    );
    assert_eq!(help(Some("nope")), None);
}

#[test]
fn version_names_the_tool_and_the_core() {
    assert_eq!(
        version(),
        format!(
            "brickgate {} (core {})",
            env!("CARGO_PKG_VERSION"),
            brickgate_core::VERSION
        )
    );
}

#[test]
fn keys_that_could_not_be_fetched_are_not_a_refusal() {
    let codes =
        [Outcome::Allowed, Outcome::Refused, Outcome::KeysUnavailable].map(|o| o.exit_code());
    assert_eq!(codes, [0, 1, 3]);
    assert!(!codes.contains(&BAD_INPUT) && !codes.contains(&output::INTERNAL));
}
