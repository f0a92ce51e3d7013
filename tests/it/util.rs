//! Shared helpers: the `pipeline` binary (in the foreground or the background), throwaway
//! project roots and pipeline copies, the fixture flake and changed copies of it, the JSON
//! report and its entries, and failure output that shows the command, its status, stdout and
//! stderr.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

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
    cmd.env("HEPHAESTUS_CACHE_DIR", fresh_cache_dir());
    cmd
}

/// An empty cache directory of its own for one command: a boot proof remembered by another
/// test must never stand in for a boot a test means to see. The boot-cache tests share one
/// directory between their runs on purpose.
pub fn fresh_cache_dir() -> PathBuf {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("cache")
        .join(format!("{}-{n}", std::process::id()));
    // Left behind in the target directory (a few small files): it only ever holds proofs.
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// The status of stage `stage` in a report entry.
pub fn stage_status<'a>(entry: &'a serde_json::Value, stage: &str) -> &'a str {
    entry["stages"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["stage"] == stage))
        .and_then(|s| s["status"].as_str())
        .unwrap_or_else(|| panic!("no stage `{stage}` in {entry:#}"))
}

/// The bound every bad input runs under (README, Security): 10 s of wall time.
pub const BAD_INPUT_TIME: Duration = Duration::from_secs(10);
/// ...and 256 MiB of data memory (RLIMIT_DATA: the heap and every private writable mapping,
/// so an allocation past it fails and the tool aborts instead of exiting 2).
pub const BAD_INPUT_MEMORY: u64 = 256 << 20;

/// `program` run through `prlimit --data=<memory> --` (util-linux) and killed after
/// [`BAD_INPUT_TIME`].
pub fn bounded(program: impl AsRef<std::ffi::OsStr>, memory: u64) -> assert_cmd::Command {
    let mut cmd = assert_cmd::Command::new("prlimit");
    cmd.arg(format!("--data={memory}"))
        .arg("--")
        .arg(program)
        .timeout(BAD_INPUT_TIME);
    cmd
}

/// [`pipeline`] under the bad-input bound: [`BAD_INPUT_TIME`] and [`BAD_INPUT_MEMORY`].
pub fn bounded_pipeline(root: &Path) -> assert_cmd::Command {
    let mut cmd = bounded(assert_cmd::cargo::cargo_bin("pipeline"), BAD_INPUT_MEMORY);
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

    /// Panic with the whole story unless stdout contains `needle`.
    pub fn stdout_has(&self, needle: &str) -> &Self {
        assert!(
            self.stdout.contains(needle),
            "stdout lacks {needle:?}\n{self}"
        );
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

/// Copy a directory tree; symlinks are copied as symlinks (a hostile fixture may point at a
/// device).
pub fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read_dir") {
        let entry = entry.expect("dir entry");
        let target = to.join(entry.file_name());
        let kind = entry.file_type().expect("file type");
        if kind.is_symlink() {
            let link = std::fs::read_link(entry.path()).expect("read_link");
            std::os::unix::fs::symlink(link, &target).expect("symlink");
        } else if kind.is_dir() {
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

/// Builds a [`Ran`] from what a finished command left, and fails the test when the tool
/// panicked (a panic is never an acceptable way to fail).
pub fn ran(what: String, code: Option<i32>, stdout: &[u8], stderr: &[u8]) -> Ran {
    let ran = Ran {
        what,
        code: code.unwrap_or(-1),
        stdout: String::from_utf8_lossy(stdout).into_owned(),
        stderr: String::from_utf8_lossy(stderr).into_owned(),
    };
    assert!(!ran.stderr.contains("panicked"), "the tool panicked\n{ran}");
    ran
}

/// Run `cmd` to completion.
pub fn run(cmd: &mut assert_cmd::Command) -> Ran {
    let what = format!("{cmd:?}");
    let out: Output = cmd.output().expect("spawn pipeline");
    ran(what, out.status.code(), &out.stdout, &out.stderr)
}

/// Run a `std` command to completion (for commands that also get spawned in the background,
/// which `assert_cmd` cannot).
pub fn run_std(cmd: &mut Command) -> Ran {
    let what = format!("{cmd:?}");
    let out = cmd.output().expect("spawn pipeline");
    ran(what, out.status.code(), &out.stdout, &out.stderr)
}

/// `pipeline --root <repo>` against the clouds.yaml `clouds`, with offline Nix and none of
/// the caller's `OS_CLOUD`, `OS_AUTH_URL` or `RUST_LOG`, so only the test decides where it
/// publishes and what is logged.
pub fn cloud_pipeline(clouds: &Path) -> Command {
    let mut cmd = Command::new(assert_cmd::cargo::cargo_bin("pipeline"));
    cmd.arg("--root")
        .arg(repo())
        .env("OS_CLIENT_CONFIG_FILE", clouds)
        .env("NIX_CONFIG", crate::nix::offline_config())
        .env_remove("OS_CLOUD")
        .env_remove("OS_AUTH_URL")
        .env_remove("RUST_LOG")
        .env("HEPHAESTUS_CACHE_DIR", fresh_cache_dir());
    cmd
}

/// A command running in the background with its stdout and stderr in files, so a test can
/// act (hold a lock, kill a server) while it runs.
pub struct Background {
    child: Child,
    what: String,
    stdout: PathBuf,
    stderr: PathBuf,
}

impl Background {
    /// Spawns `cmd` with its stdout and stderr going to `dir/stdout` and `dir/stderr`.
    pub fn spawn(cmd: &mut Command, dir: &Path) -> Background {
        let (stdout, stderr) = (dir.join("stdout"), dir.join("stderr"));
        let what = format!("{cmd:?}");
        let child = cmd
            .stdout(Stdio::from(File::create(&stdout).expect("stdout file")))
            .stderr(Stdio::from(File::create(&stderr).expect("stderr file")))
            .spawn()
            .expect("spawn pipeline");
        Background {
            child,
            what,
            stdout,
            stderr,
        }
    }

    /// The exit status when the command has ended.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().expect("wait for pipeline")
    }

    /// What the command wrote to stderr so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// Waits for the command to exit and returns what it printed. Not a timing assertion:
    /// `limit` only guards against a hang; when it passes the command is killed and the test
    /// fails with `stuck`, the command and its stderr.
    pub fn finish(mut self, limit: Duration, stuck: &str) -> Ran {
        let deadline = Instant::now() + limit;
        let status = loop {
            if let Some(status) = self.try_wait() {
                break status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "{stuck} after {limit:?}\ncommand: {}\n--- stderr\n{}",
                    self.what,
                    self.stderr()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        ran(
            self.what,
            status.code(),
            &std::fs::read(&self.stdout).unwrap_or_default(),
            &std::fs::read(&self.stderr).unwrap_or_default(),
        )
    }
}

/// The one JSON document a `--json` command printed on stdout.
pub fn report(ran: &Ran) -> Value {
    serde_json::from_str(&ran.stdout)
        .unwrap_or_else(|e| panic!("stdout is not one JSON report ({e})\n{ran}"))
}

/// The report's entry of `profile`.
pub fn entry<'a>(report: &'a Value, profile: &str) -> &'a Value {
    report["images"]
        .as_array()
        .and_then(|images| images.iter().find(|i| i["profile"] == profile))
        .unwrap_or_else(|| panic!("the report has no image of {profile}: {report:#}"))
}

/// The string `key` of a report entry.
pub fn text<'a>(entry: &'a Value, key: &str) -> &'a str {
    entry[key]
        .as_str()
        .unwrap_or_else(|| panic!("report entry lacks a string `{key}`: {entry:#}"))
}

/// The number `key` of a report entry.
pub fn number(entry: &Value, key: &str) -> u64 {
    entry[key]
        .as_u64()
        .unwrap_or_else(|| panic!("report entry lacks a number `{key}`: {entry:#}"))
}

/// Lower-case hex of `bytes`, as Glance and coreutils print digests.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The fixture flake's directory (`nix::fixture_flake` is its flake reference).
pub fn fixture_flake() -> PathBuf {
    repo().join("fixtures/flake")
}

/// `dir/flake-<content>`: a copy of the fixture flake whose `generation` file says `content`,
/// so every image changes. Tests pass the same `content` in every run, so Nix builds each
/// changed image once.
pub fn changed_flake(dir: &Path, content: &str) -> PathBuf {
    let flake = dir.join(format!("flake-{content}"));
    copy_tree(&fixture_flake(), &flake);
    std::fs::write(flake.join("generation"), format!("{content}\n")).expect("write generation");
    flake
}

/// A test's copy of a shipped pipeline: its upload name made unique, and optionally without
/// the `boot-check` stage, which boots every image under QEMU (seconds each without KVM) and
/// has tests of its own.
pub struct PipelineCopy<'a> {
    /// The shipped file under `pipelines/`, e.g. `publish-all.yaml`.
    pub file: &'a str,
    /// Upload options added under the upload name, e.g. `keep: 100`.
    pub upload_options: &'a [&'a str],
    /// Whether the `boot-check` stage boots (else it is skipped, with a reason).
    pub boot_check: bool,
    /// What else the shipped file must say for the test to mean what it claims.
    pub must_say: &'a [&'a str],
}

impl PipelineCopy<'_> {
    /// Writes `dir/<file>` with the upload name `<prefix>-{profile}`. Fails, asking to adapt
    /// the test, when the shipped file no longer says what the copy changes or relies on.
    pub fn write(&self, dir: &Path, prefix: &str) -> PathBuf {
        let file = self.file;
        let shipped = std::fs::read_to_string(repo().join("pipelines").join(file))
            .unwrap_or_else(|e| panic!("read pipelines/{file}: {e}"));
        let from = "name: \"hephaestus-{profile}\"";
        assert!(
            shipped.contains(from),
            "pipelines/{file} no longer sets the upload name as {from}; adapt this test"
        );
        for needle in self.must_say {
            assert!(
                shipped.contains(needle),
                "pipelines/{file} no longer says {needle:?}; adapt this test"
            );
        }
        let mut to = format!("name: \"{prefix}-{{profile}}\"");
        for option in self.upload_options {
            to.push_str(&format!("\n      {option}"));
        }
        let replaced = shipped.replace(from, &to);
        let mut text = String::new();
        // The indentation of a dropped `- boot-check` item: deeper lines are its options.
        let mut dropping: Option<usize> = None;
        for line in replaced.lines() {
            let indent = line.len() - line.trim_start().len();
            if dropping.is_some_and(|d| indent > d) {
                continue;
            }
            dropping = None;
            if !self.boot_check && line.trim_start().starts_with("- boot-check") {
                // A publishing pipeline must say why it does not boot: the tests say so.
                dropping = Some(indent);
                text.push_str(&" ".repeat(indent));
                text.push_str("- boot-check: {skip: \"the boot tests prove the boot\"}\n");
                continue;
            }
            text.push_str(line);
            text.push('\n');
        }
        if !self.boot_check {
            assert_eq!(
                text.matches("- boot-check").count(),
                text.matches("- boot-check: {skip:").count(),
                "could not turn boot-check off in the pipeline copy:\n{text}"
            );
        }
        let path = dir.join(file);
        std::fs::write(&path, text).expect("write the pipeline copy");
        path
    }
}
