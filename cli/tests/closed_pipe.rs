//! A reader that closed stdout (`brickgate check big.yaml | head -1`) ends the tool quietly
//! with exit 141, never with a panic (`println!` panics on EPIPE: exit 101, or 134 with
//! `panic = "abort"`). The pipe's read end is closed before the tool starts, so its first
//! write fails, whatever the timing.

use std::process::{Command, Stdio};

#[test]
fn a_closed_stdout_exits_141_without_a_panic() {
    let cases: [&[&str]; 4] = [
        &["check", "deploy/istio/wasmplugin.yaml"],
        &["check", "--json", "envoy/envoy.yaml"],
        &["route", "GET", "/api/2.0/clusters/list"],
        &["--help"],
    ];
    for args in cases {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let output = Command::new(env!("CARGO_BIN_EXE_brickgate"))
            .args(args)
            .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
            .env("BRICKGATE_CLIENT_SECRET", "closed-pipe-test")
            .stdout(Stdio::from(writer))
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(141), "{args:?}: {output:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.is_empty(), "{args:?}: {stderr}");
    }
}
