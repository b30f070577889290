//! Every configuration example in the README and docs/, saved as a file, is accepted by
//! `tidings serve --print-config` as written (which checks it as `serve` does, connecting to the
//! local Redis, Redis Cluster and NATS where it names them); so are the commented examples of the
//! Debian package's config (deploy/tidings.toml).

#[path = "../../tidings/tests/it/services.rs"]
mod services;

use std::path::{Path, PathBuf};

/// The Markdown files of the user docs.
fn documents() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut files = vec![root.join("README.md"), root.join("client/README.md")];
    for entry in std::fs::read_dir(root.join("docs")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "md") {
            files.push(path);
        }
    }
    files
}

/// The ```toml blocks of a Markdown text.
fn toml_blocks(text: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("```toml\n") {
        let body = &rest[start + "```toml\n".len()..];
        let end = body.find("```").expect("a closed block");
        blocks.push(body[..end].to_owned());
        rest = &body[end..];
    }
    blocks
}

/// Saves `config` as a file named for `name` and runs `tidings serve --print-config` on it.
fn print_config(name: &str, config: &str) -> std::process::Output {
    let file = std::env::temp_dir().join(format!("tidings-{name}-{}.toml", std::process::id()));
    std::fs::write(&file, config).unwrap();
    std::process::Command::new(env!("CARGO_BIN_EXE_tidings"))
        .args(["serve", "--print-config", "--config"])
        .arg(&file)
        .env("RUST_LOG", "error")
        .output()
        .unwrap()
}

#[test]
fn every_toml_example_in_the_docs_is_accepted_as_written() {
    services::redis();
    services::redis_cluster();
    services::nats();
    let mut checked = 0;
    for document in documents() {
        let text = std::fs::read_to_string(&document).unwrap();
        for (n, block) in toml_blocks(&text).into_iter().enumerate() {
            // A Cargo manifest (how to depend on the library) is not a tidings configuration.
            if block.trim_start().starts_with("[dependencies]") {
                continue;
            }
            let stem = document.file_stem().unwrap().to_string_lossy();
            let out = print_config(&format!("docs-{stem}-{n}"), &block);
            assert!(
                out.status.success(),
                "{} block {n} is refused: {}\n{block}",
                document.display(),
                String::from_utf8_lossy(&out.stderr)
            );
            checked += 1;
        }
    }
    assert!(checked >= 5, "{checked} blocks checked");
}

#[test]
fn the_packaged_configs_commented_examples_are_accepted_uncommented() {
    services::redis();
    let packaged = include_str!("../../../deploy/tidings.toml");
    let is_key = |line: &str| {
        line.split_once(" = ")
            .is_some_and(|(key, _)| key.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
    };
    // Every commented key and table but [nats], uncommented, on Redis (history needs the Redis bus
    // when there are many nodes: it has no NATS one).
    let nats = |line: &str| line.starts_with("[nats]") || line.contains("nats://");
    let uncommented: Vec<&str> = packaged
        .lines()
        .map(|line| match line.strip_prefix("# ") {
            Some(rest) if (rest.starts_with('[') || is_key(rest)) && !nats(rest) => rest,
            _ => line,
        })
        .map(|line| match line.split_once(" = ") {
            Some(("bus", _)) => "bus = \"redis\"",
            Some(("store", _)) => "store = \"redis\"",
            _ => line,
        })
        .collect();
    let text = uncommented.join("\n");
    let out = print_config("packaged", &text);
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    let secrets = printed.lines().next().unwrap_or_default();
    for name in [
        "api_key",
        "token.secret",
        "webhook.secret",
        "rpc_proxy.secret",
        "pusher.apps[0].secret",
    ] {
        assert!(secrets.contains(name), "{name} is not named: {printed}");
    }
    for example in [
        "room:*",
        "chat:*",
        "127.0.0.1:9464",
        "redis://127.0.0.1:6379/0",
    ] {
        assert!(printed.contains(example), "{example} is not set: {printed}");
    }
}
