//! The library's layers import downward only (docs/architecture.md, "Layers"): each top-level
//! module may use modules of lower layers, never one of its own layer or above, so no import
//! cycle can form. This test reads the sources and checks every `crate::` path outside tests.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

/// The layers, bottom first. A new top-level module must be placed here.
const LAYERS: &[&[&str]] = &[
    &["ids", "logs", "names"],
    &["error", "redis_conn", "tasks"],
    &["limits", "model"],
    &["auth", "backend", "protocol", "pusher", "stats"],
    &["history"],
    &["bus", "store"],
    &["fanout", "presence"],
    &["hub"],
    &["socket"],
    &["http"],
];

/// Test-only modules, outside the layering.
const TEST_ONLY: &[&str] = &["testing", "tests"];

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|layer| layer.contains(&module))
}

/// Every `.rs` file under `dir`.
fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The code of a file without comments and without its trailing `mod tests`.
fn code(text: &str) -> String {
    let text = text
        .split("#[cfg(test)]\nmod tests")
        .next()
        .unwrap_or_default();
    text.lines()
        .filter(|line| !line.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The first segment of every path after `crate::`, braces included (`crate::{a::B, c}`).
fn crate_paths(code: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for (at, _) in code.match_indices("crate::") {
        let rest = &code[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let (mut depth, mut start) = (0, 0);
            for (i, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => {
                        found.insert(first_segment(&group[start..i]));
                        break;
                    }
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        found.insert(first_segment(&group[start..i]));
                        start = i + 1;
                    }
                    _ => {}
                }
            }
        } else {
            found.insert(first_segment(rest));
        }
    }
    found.remove("");
    found
}

fn first_segment(path: &str) -> String {
    let path = path.trim();
    let end = path
        .find(|c: char| !(c.is_alphanumeric() || c == '_'))
        .unwrap_or(path.len());
    path[..end].to_string()
}

#[test]
fn modules_import_only_lower_layers() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let mut broken = Vec::new();
    for file in files {
        let relative = file.strip_prefix(&src).unwrap();
        let module = relative.iter().next().unwrap().to_str().unwrap();
        let module = module.trim_end_matches(".rs");
        let name = file.file_stem().unwrap().to_str().unwrap();
        if module == "lib" || TEST_ONLY.contains(&module) || TEST_ONLY.contains(&name) {
            continue;
        }
        let Some(layer) = layer_of(module) else {
            broken.push(format!("{module}: not placed in LAYERS"));
            continue;
        };
        for used in crate_paths(&code(&fs::read_to_string(&file).unwrap())) {
            if used == module {
                continue;
            }
            match layer_of(&used) {
                Some(l) if l < layer => {}
                Some(_) => broken.push(format!(
                    "{}: imports `{used}`, which is not below `{module}`",
                    relative.display()
                )),
                None => broken.push(format!(
                    "{}: uses `crate::{used}`; name items by their module's path",
                    relative.display()
                )),
            }
        }
    }
    assert!(broken.is_empty(), "layering broken:\n{}", broken.join("\n"));
}

/// The sibling files (or folders) of one folder that `code`, a file in that folder, names: by
/// `super::name` from a file beside `mod.rs`, or by `crate::<folder path>::name`.
fn siblings(code: &str, folder: &str, names: &BTreeSet<String>) -> BTreeSet<String> {
    let prefixes = ["super::".to_string(), format!("crate::{folder}::")];
    let mut found = BTreeSet::new();
    for prefix in &prefixes {
        for (at, _) in code.match_indices(prefix.as_str()) {
            let rest = &code[at + prefix.len()..];
            let mut heads = vec![first_segment(rest)];
            if let Some(group) = rest.strip_prefix('{') {
                let group = group.split('}').next().unwrap_or_default();
                heads = group.split(',').map(first_segment).collect();
            }
            found.extend(heads.into_iter().filter(|h| names.contains(h)));
        }
    }
    found
}

/// Inside each folder, the files beside `mod.rs` never import one another in a circle (each
/// may use `mod.rs`'s items, which name them, but not a sibling that uses it back).
#[test]
fn files_inside_a_folder_import_no_circle() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let mut circles = Vec::new();
    let mut folders: BTreeSet<PathBuf> = files
        .iter()
        .filter_map(|f| f.parent().map(Path::to_path_buf))
        .collect();
    folders.remove(&src);
    for folder in folders {
        let path = folder
            .strip_prefix(&src)
            .unwrap()
            .to_str()
            .unwrap()
            .replace('/', "::");
        let members: Vec<PathBuf> = fs::read_dir(&folder)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.file_stem().is_some_and(|s| s != "mod"))
            .filter(|p| p.is_dir() || p.extension().is_some_and(|e| e == "rs"))
            .collect();
        let name = |p: &Path| p.file_stem().unwrap().to_str().unwrap().to_string();
        let names: BTreeSet<String> = members.iter().map(|p| name(p)).collect();
        let uses = |p: &Path| {
            let mut text = String::new();
            let mut inside = Vec::new();
            match p.is_dir() {
                true => sources(p, &mut inside),
                false => inside.push(p.to_path_buf()),
            }
            for file in inside {
                text.push_str(&code(&fs::read_to_string(file).unwrap()));
            }
            let mut used = siblings(&text, &path, &names);
            used.remove(&name(p));
            used
        };
        let edges: Vec<(String, BTreeSet<String>)> =
            members.iter().map(|p| (name(p), uses(p))).collect();
        for (start, used) in &edges {
            // Every file `start` reaches through its imports; reaching itself is a circle.
            let (mut seen, mut next): (BTreeSet<&String>, Vec<&String>) =
                (BTreeSet::new(), used.iter().collect());
            while let Some(file) = next.pop() {
                if seen.insert(file) {
                    let more = edges.iter().filter(|(n, _)| n == file);
                    next.extend(more.flat_map(|(_, u)| u.iter()));
                }
            }
            if seen.contains(start) {
                circles.push(format!("{path}: {start} is in a circle of imports"));
            }
        }
    }
    assert!(
        circles.is_empty(),
        "files import each other:\n{}",
        circles.join("\n")
    );
}

#[test]
fn the_checker_reads_grouped_and_nested_paths() {
    let code = code(
        "use crate::{fanout::{Local, Outbox}, hub};\n// use crate::http;\nx(crate::bus::Bus);\n",
    );
    let expected: BTreeSet<String> = ["bus", "fanout", "hub"].map(String::from).into();
    assert_eq!(crate_paths(&code), expected);
}

/// The names at the top of the source tree drawn in docs/architecture.md (`name/` for a folder).
fn drawn_tree() -> BTreeSet<String> {
    let doc = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/architecture.md");
    let doc = fs::read_to_string(doc).unwrap();
    let tree = doc
        .split("```\ncrates/tidings/src/\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("docs/architecture.md draws crates/tidings/src/ in a code block");
    tree.lines()
        .filter(|line| line.starts_with("  ") && !line.starts_with("   "))
        .filter_map(|line| line.split_whitespace().next())
        .map(String::from)
        .collect()
}

#[test]
fn the_tree_in_the_architecture_doc_matches_the_sources() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut actual = BTreeSet::new();
    for entry in fs::read_dir(&src).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().into_string().unwrap();
        if TEST_ONLY.contains(&name.trim_end_matches(".rs")) {
            continue;
        }
        actual.insert(match entry.path().is_dir() {
            true => format!("{name}/"),
            false => name,
        });
    }
    assert_eq!(
        drawn_tree(),
        actual,
        "docs/architecture.md's tree against src/"
    );
}

/// Names of request policy: what a request means, whether it is allowed, its rate, its
/// scheduling. They belong to the hub (`hub/requests.rs`), not to a transport.
const REQUEST_POLICY: &[&str] = &[
    "Client",
    "RequestError",
    "TokenBucket",
    "request_rate",
    "request_burst",
    "max_requests_per_socket",
    "max_calls_per_socket",
    "Recover",
    "Subscribe",
    "Unsubscribe",
    "Rpc",
];

#[test]
fn the_socket_layer_holds_no_request_policy() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src.join("socket"), &mut files);
    let mut broken = Vec::new();
    for file in files {
        let code = code(&fs::read_to_string(&file).unwrap());
        let relative = file.strip_prefix(&src).unwrap().display().to_string();
        let words: BTreeSet<&str> = code
            .split(|c: char| !(c.is_alphanumeric() || c == '_'))
            .collect();
        for name in REQUEST_POLICY.iter().filter(|name| words.contains(*name)) {
            broken.push(format!("{relative}: names `{name}`"));
        }
        let protocol_requests = code
            .lines()
            .filter(|line| line.contains("crate::protocol"))
            .any(|line| line.contains("Request"));
        if protocol_requests || code.contains("Request::") {
            broken.push(format!("{relative}: handles protocol requests"));
        }
    }
    assert!(
        broken.is_empty(),
        "request policy in socket/:\n{}",
        broken.join("\n")
    );
}
