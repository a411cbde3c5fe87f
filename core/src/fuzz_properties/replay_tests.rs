//! `make test` replays every committed fuzz input (seeds and findings, `fuzz/corpus/<target>/`)
//! and every vector file (`tests/vectors/`) through the checks the fuzz targets run.

use std::path::{Path, PathBuf};

use super::{TARGETS, vectors};

fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn files(folder: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(folder)
        .unwrap_or_else(|e| panic!("{}: {e}", folder.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    files
}

#[test]
fn every_committed_fuzz_input_keeps_its_target_s_properties() {
    let mut failures = Vec::new();
    for (target, check) in TARGETS {
        let corpus = files(&repository().join("fuzz/corpus").join(target));
        assert!(!corpus.is_empty(), "no seed corpus for {target}");
        for file in corpus {
            let data = std::fs::read(&file).unwrap();
            if std::panic::catch_unwind(|| check(&data)).is_err() {
                failures.push(file.display().to_string());
            }
        }
    }
    assert!(failures.is_empty(), "properties fail on: {failures:#?}");
}

#[test]
fn every_jws_vector_gets_the_verdict_its_file_names() {
    assert!(vectors::check_jws_families() >= 100);
}

#[test]
fn the_major_idps_documents_and_tokens_are_read_as_published() {
    let folder = repository().join("tests/vectors/idp");
    let mut idps: Vec<PathBuf> = std::fs::read_dir(&folder)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .collect();
    idps.sort();
    let names: Vec<String> = idps
        .iter()
        .map(|path| path.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    for expected in [
        "auth0",
        "databricks",
        "entra-v1",
        "entra-v2",
        "google",
        "keycloak",
        "okta",
    ] {
        assert!(
            names.iter().any(|n| n == expected),
            "no {expected} documents"
        );
    }
    for (idp, name) in idps.iter().zip(&names) {
        let read = |file: &str| std::fs::read(idp.join(file)).unwrap();
        vectors::check_idp(
            name,
            &read("discovery.json"),
            &read("jwks.json"),
            &read("case.json"),
        );
    }
}
