//! Shared helpers: the `pipeline` binary, throwaway project roots, and failure output that
//! shows the command, its status, stdout and stderr.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Output;

/// The repository root (where Cargo.toml is).
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A `pipeline` command with `--root root`.
pub fn pipeline(root: &Path) -> assert_cmd::Command {
    let mut cmd = assert_cmd::Command::cargo_bin("pipeline")
        .expect("the pipeline binary is built by cargo test");
    cmd.arg("--root").arg(root);
    cmd.env_remove("RUST_LOG");
    cmd
}

/// The result of a command, with everything needed to explain a failed assertion.
pub struct Ran {
    /// What was run.
    pub what: String,
    /// Exit code (-1 when killed by a signal).
    pub code: i32,
    /// Stdout as text.
    pub stdout: String,
    /// Stderr as text.
    pub stderr: String,
}

impl Ran {
    /// Panic with the whole story unless the exit code is `code`.
    pub fn expect_code(&self, code: i32) -> &Self {
        assert_eq!(self.code, code, "unexpected exit code\n{self}");
        self
    }

    /// Panic with the whole story unless stderr contains `needle`.
    pub fn stderr_has(&self, needle: &str) -> &Self {
        assert!(
            self.stderr.contains(needle),
            "stderr lacks {needle:?}\n{self}"
        );
        self
    }
}

impl std::fmt::Display for Ran {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "command: {}\nexit: {}\n--- stdout\n{}\n--- stderr\n{}",
            self.what, self.code, self.stdout, self.stderr
        )
    }
}

/// Run `cmd` to completion.
pub fn run(cmd: &mut assert_cmd::Command) -> Ran {
    let what = format!("{cmd:?}");
    let out: Output = cmd.output().expect("spawn pipeline");
    let ran = Ran {
        what,
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    assert!(!ran.stderr.contains("panicked"), "the tool panicked\n{ran}");
    ran
}

/// Copy a directory tree.
pub fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read_dir") {
        let entry = entry.expect("dir entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

/// A temporary project root: the repository's profiles/ and pipelines/, an empty nix/, and
/// then `fixtures/bad/<overlay>` copied over them when given.
pub fn project(overlay: Option<&str>) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    copy_tree(&repo().join("profiles"), &dir.path().join("profiles"));
    copy_tree(&repo().join("pipelines"), &dir.path().join("pipelines"));
    std::fs::create_dir_all(dir.path().join("nix")).expect("mkdir nix");
    if let Some(name) = overlay {
        copy_tree(&repo().join("fixtures/bad").join(name), dir.path());
    }
    dir
}
