//! Every configuration example in the README and docs/, saved as a file, is accepted by
//! `tidings serve --print-config` as written (which checks it as `serve` does, connecting to the
//! local Redis, Redis Cluster and NATS where it names them).

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
            let file = std::env::temp_dir().join(format!(
                "tidings-docs-{}-{}-{n}.toml",
                std::process::id(),
                document.file_stem().unwrap().to_string_lossy()
            ));
            std::fs::write(&file, &block).unwrap();
            let out = std::process::Command::new(env!("CARGO_BIN_EXE_tidings"))
                .args(["serve", "--print-config", "--config"])
                .arg(&file)
                .env("RUST_LOG", "error")
                .output()
                .unwrap();
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
