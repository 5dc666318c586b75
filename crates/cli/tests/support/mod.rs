//! What the command-line tests share: the binary, a private directory, the text of a run, and
//! the result documents it wrote.
#![allow(dead_code)] // each test file uses its own part

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

pub fn hvbench() -> Command {
    Command::new(env!("CARGO_BIN_EXE_hvbench"))
}

/// A fresh directory for one test, named after the test file's `kind` and the test.
pub fn tmpdir(kind: &str, name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("hvbench-{kind}-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Standard output and standard error, for assertions and failure messages.
pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The result documents in `dir` (none when it does not exist).
pub fn documents(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|r| {
            r.map(|e| e.unwrap().path())
                .filter(|p| p.extension().is_some_and(|e| e == "json"))
                .collect()
        })
        .unwrap_or_default()
}

/// The one result document in `dir`, parsed.
pub fn only_document(dir: &Path) -> Value {
    let docs = documents(dir);
    assert_eq!(
        docs.len(),
        1,
        "expected one result document in {}: {docs:?}",
        dir.display()
    );
    serde_json::from_str(&std::fs::read_to_string(&docs[0]).unwrap()).unwrap()
}

/// Whether the tests run in CI (`CI=true`), where a backend that cannot start is a failure.
pub fn ci() -> bool {
    std::env::var("CI").as_deref() == Ok("true")
}

/// Whether a result document says `name` was available.
pub fn available(doc: &Value, name: &str) -> bool {
    doc["backends"]
        .as_array()
        .unwrap()
        .iter()
        .any(|b| b["name"] == name && b["availability"]["status"] == "available")
}
