//! The top-level modules of the core import each other without a cycle (issue 19), so that
//! each layer can be read, tested and reused by a second adapter without the ones above it.
//! The order is the one `lib.rs` describes.
//!
//! Production code only: a `#[cfg(test)]` module (a file declared under it, or the inline test
//! module clippy's `items_after_test_module` keeps last in its file) may reach any layer, as a
//! unit test of the key store compiles a real configuration.
//! References are read as `crate::name` and as `super::` chains that climb to the crate root.
//! A grouped `use crate::{…}` is refused rather than parsed, so no edge can hide in one.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// (importing module, imported module) → where each reference is written.
type Edges = BTreeMap<(String, String), Vec<String>>;

fn src_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// `mod name;` or `pub mod name;` (any visibility), or `mod name {`: the name and whether the
/// body is inline.
fn mod_declaration(line: &str) -> Option<(&str, bool)> {
    let line = line.trim();
    let rest = line
        .strip_prefix("pub ")
        .or_else(|| line.strip_prefix("pub(crate) "))
        .or_else(|| line.strip_prefix("pub(super) "))
        .unwrap_or(line);
    let rest = rest.strip_prefix("mod ")?;
    if let Some(name) = rest.strip_suffix(';') {
        return Some((name.trim(), false));
    }
    rest.strip_suffix('{').map(|name| (name.trim(), true))
}

fn child_file(dir: &Path, name: &str) -> PathBuf {
    let flat = dir.join(format!("{name}.rs"));
    if flat.exists() {
        flat
    } else {
        dir.join(name).join("mod.rs")
    }
}

fn identifier(text: &str) -> &str {
    let end = text
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(text.len());
    &text[..end]
}

/// The top-level modules one line of code names, read from `crate::x` and from `super::`
/// chains long enough to reach the crate root from a file `depth` modules deep.
fn referenced_roots(line: &str, depth: usize) -> Vec<String> {
    let code = line.split("//").next().unwrap_or("");
    let mut roots = Vec::new();
    for (at, _) in code.match_indices("crate::") {
        let before = code[..at].chars().next_back();
        if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$') {
            continue;
        }
        let rest = &code[at + "crate::".len()..];
        assert!(
            !rest.starts_with('{'),
            "write one `use crate::module::…` per module, not a grouped `{}`",
            line.trim()
        );
        roots.push(identifier(rest).to_string());
    }
    let mut rest = code;
    while let Some(at) = rest.find("super::") {
        let before = rest[..at].chars().next_back();
        let mut chain = &rest[at..];
        let mut climbs = 0;
        while let Some(next) = chain.strip_prefix("super::") {
            climbs += 1;
            chain = next;
        }
        let starts_path = !before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
        if starts_path && climbs >= depth && !chain.starts_with('*') {
            roots.push(identifier(chain).to_string());
        }
        rest = chain;
    }
    roots
}

/// Reads `file` (a module `depth` deep under top-level module `top`) and the production
/// modules it declares, recording every reference to another top-level module.
fn read_module(file: &Path, top: &str, depth: usize, roots: &BTreeSet<String>, edges: &mut Edges) {
    let text = fs::read_to_string(file).unwrap();
    let is_mod_rs = file.file_name().is_some_and(|n| n == "mod.rs");
    let dir = if is_mod_rs {
        file.parent().unwrap().to_path_buf()
    } else {
        file.with_extension("")
    };
    let shown = file.strip_prefix(src_dir()).unwrap().display().to_string();
    let mut under_test_cfg = false;
    for (index, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("//") {
            continue;
        }
        if trimmed.starts_with("#[") {
            under_test_cfg |= trimmed.starts_with("#[cfg(") && trimmed.contains("test");
            continue;
        }
        let test_item = std::mem::take(&mut under_test_cfg);
        match (mod_declaration(line), test_item) {
            // The inline test module is the file's last item: nothing below it is production.
            (Some((_, true)), true) => break,
            (Some((_, false)), true) => continue,
            (Some((name, false)), false) => {
                let child = child_file(&dir, name);
                read_module(&child, top, depth + 1, roots, edges);
                continue;
            }
            (_, true) => continue,
            _ => {}
        }
        for target in referenced_roots(line, depth) {
            if target != top && roots.contains(&target) {
                edges
                    .entry((top.to_string(), target))
                    .or_default()
                    .push(format!("{shown}:{}", index + 1));
            }
        }
    }
}

/// The production top-level modules `lib.rs` declares, and the references among them.
fn module_graph() -> (BTreeSet<String>, Edges) {
    let lib = src_dir().join("lib.rs");
    let text = fs::read_to_string(&lib).unwrap();
    let mut roots = BTreeSet::new();
    let mut under_test_cfg = false;
    for line in text.lines() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("#[") {
            under_test_cfg |= trimmed.starts_with("#[cfg(") && trimmed.contains("test");
            continue;
        }
        let test_item = std::mem::take(&mut under_test_cfg);
        if let (Some((name, false)), false) = (mod_declaration(line), test_item) {
            roots.insert(name.to_string());
        }
    }
    let mut edges = Edges::new();
    for root in &roots {
        read_module(&child_file(&src_dir(), root), root, 1, &roots, &mut edges);
    }
    (roots, edges)
}

/// Every cycle a depth-first walk meets, each as the path it closes and the closing edge.
fn cycles(roots: &BTreeSet<String>, edges: &Edges) -> Vec<(Vec<String>, (String, String))> {
    let mut out = BTreeMap::<String, Vec<String>>::new();
    for (from, to) in edges.keys() {
        out.entry(from.clone()).or_default().push(to.clone());
    }
    let mut done = BTreeSet::new();
    let mut found = Vec::new();
    fn visit(
        node: &str,
        out: &BTreeMap<String, Vec<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
        found: &mut Vec<(Vec<String>, (String, String))>,
    ) {
        path.push(node.to_string());
        for next in out.get(node).into_iter().flatten() {
            if let Some(start) = path.iter().position(|p| p == next) {
                let mut cycle = path[start..].to_vec();
                cycle.push(next.clone());
                found.push((cycle, (node.to_string(), next.clone())));
            } else if !done.contains(next) {
                visit(next, out, path, done, found);
            }
        }
        path.pop();
        done.insert(node.to_string());
    }
    for root in roots {
        if !done.contains(root) {
            visit(root, &out, &mut Vec::new(), &mut done, &mut found);
        }
    }
    found
}

#[test]
fn top_level_modules_import_each_other_without_a_cycle() {
    let (roots, edges) = module_graph();
    // The reader must see the graph, or an empty one would pass: the engine drives policy,
    // and the stream drives the engine.
    assert!(
        edges.contains_key(&("engine".into(), "policy".into())),
        "{edges:?}"
    );
    assert!(
        edges.contains_key(&("stream".into(), "engine".into())),
        "{edges:?}"
    );
    let report: Vec<String> = cycles(&roots, &edges)
        .into_iter()
        .map(|(cycle, closing)| {
            format!(
                "{}; closed by {} -> {} at {:?}",
                cycle.join(" -> "),
                closing.0,
                closing.1,
                edges[&closing]
            )
        })
        .collect();
    assert!(report.is_empty(), "module cycles:\n{}", report.join("\n"));
}

#[test]
fn a_cycle_is_reported_with_the_edge_that_closes_it() {
    let roots: BTreeSet<String> = ["config", "stream", "token"].map(String::from).into();
    let mut edges = Edges::new();
    for (from, to) in [
        ("stream", "config"),
        ("config", "token"),
        ("token", "stream"),
    ] {
        edges.insert((from.into(), to.into()), vec!["here:1".into()]);
    }
    let found = cycles(&roots, &edges);
    assert_eq!(
        found,
        vec![(
            ["config", "token", "stream", "config"]
                .map(String::from)
                .to_vec(),
            ("stream".to_string(), "config".to_string())
        )]
    );
}

#[test]
fn references_are_read_from_crate_paths_and_root_reaching_super_chains() {
    let cases: &[(&str, usize, &[&str])] = &[
        ("use crate::config::Provider;", 2, &["config"]),
        ("let x = crate::identity::grants::Grant;", 3, &["identity"]),
        ("use super::super::jwks::KeySet;", 2, &["jwks"]),
        ("use super::raw::RawRule;", 2, &[]),
        ("use super::*;", 1, &[]),
        ("foo($crate::x)", 1, &[]),
        ("use brickgate_core::config::Config;", 1, &[]),
        ("let s = 1; // crate::stream is not code", 1, &[]),
    ];
    for (line, depth, expected) in cases {
        assert_eq!(referenced_roots(line, *depth), *expected, "{line}");
    }
}
