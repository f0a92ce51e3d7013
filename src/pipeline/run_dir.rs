//! The run directory (`.run/` by default): one fresh directory per run, holding its GC roots
//! and serial logs, and the per-cloud locks that keep two runs on one machine from changing
//! the same images at once. Only the newest [`KEEP_RUNS`] runs' directories are kept, so a
//! nightly service does not fill its disk with boot logs.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Why the run directory or a lock in it could not be had.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A directory or lock file could not be created or opened.
    #[error("cannot prepare {}", path.display())]
    Io {
        /// The path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Another process held the lock for longer than the timeout.
    #[error(
        "another pipeline process is changing images in cloud `{cloud}` (it holds {}); nothing \
         was done — wait for it, or raise --lock-timeout",
        path.display()
    )]
    Busy {
        /// The cloud.
        cloud: String,
        /// The lock file.
        path: PathBuf,
    },
}

/// How many runs' directories are kept; older ones are deleted when a run starts. A run
/// that boots five images leaves about 5 MiB (serial logs, the NVRAM copies, config drives).
pub const KEEP_RUNS: usize = 20;

/// Where runs keep their working files.
#[derive(Debug, Clone)]
pub struct RunDir {
    base: PathBuf,
}

/// A held cloud lock; dropping it releases the lock.
#[derive(Debug)]
pub struct CloudLock {
    _file: File,
}

impl RunDir {
    /// Runs keep their files under `base`.
    pub fn new(base: PathBuf) -> Self {
        RunDir { base }
    }

    /// The base directory.
    pub fn base(&self) -> &Path {
        &self.base
    }

    /// The directory of one run: `<base>/<UTC start>-<pipeline>-<pid>` (not created).
    pub fn for_run(&self, pipeline: &str, started: time::OffsetDateTime) -> PathBuf {
        let stamp = crate::pipeline::report::rfc3339(started).replace([':', '-'], "");
        self.base
            .join(format!("{stamp}-{pipeline}-{}", std::process::id()))
    }

    /// Deletes all but the newest `keep` run directories (named as [`RunDir::for_run`] names
    /// them; nothing else in the base is touched), never one whose process is still
    /// running. Returns what it deleted; a directory that cannot be deleted is only logged, as
    /// it never stops a run.
    pub fn prune(&self, keep: usize) -> Vec<PathBuf> {
        let Ok(entries) = std::fs::read_dir(&self.base) else {
            return Vec::new();
        };
        let mut runs: Vec<(String, PathBuf)> = entries
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                is_run_name(&name).then(|| (name, e.path()))
            })
            .collect();
        // The UTC stamp leads the name, so names sort by start time.
        runs.sort();
        let old = runs.len().saturating_sub(keep);
        let mut removed = Vec::new();
        for (name, path) in runs.into_iter().take(old) {
            if run_pid(&name).is_some_and(|pid| Path::new("/proc").join(pid).exists()) {
                continue;
            }
            match std::fs::remove_dir_all(&path) {
                Ok(()) => removed.push(path),
                // Another run started at the same time deleted it first.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => tracing::warn!(
                    "cannot delete the old run directory {}: {e}",
                    path.display()
                ),
            }
        }
        removed
    }

    /// Hold the lock of `cloud`, waiting up to `timeout` for another process to release it.
    /// Every command that changes which image of a family is current takes it.
    pub fn lock_cloud(&self, cloud: &str, timeout: Duration) -> Result<CloudLock, Error> {
        let dir = self.base.join("locks");
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| Error::Io { path, source }
        };
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        let path = dir.join(format!("{}.lock", cloud.replace(['/', ' '], "_")));
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io(&path))?;
        let start = Instant::now();
        let mut told = false;
        loop {
            match file.try_lock() {
                Ok(()) => return Ok(CloudLock { _file: file }),
                Err(std::fs::TryLockError::WouldBlock) => {
                    if start.elapsed() >= timeout {
                        return Err(Error::Busy {
                            cloud: cloud.to_string(),
                            path,
                        });
                    }
                    if !told {
                        tracing::info!(
                            "another process is changing images in cloud `{cloud}`; waiting up to {}s for it ({})",
                            timeout.as_secs(),
                            path.display()
                        );
                        told = true;
                    }
                    std::thread::sleep(Duration::from_millis(500));
                }
                Err(std::fs::TryLockError::Error(e)) => return Err(io(&path)(e)),
            }
        }
    }
}

/// `<yyyymmdd>T<time>Z-<pipeline>-<pid>`, as [`RunDir::for_run`] names a run's directory.
fn is_run_name(name: &str) -> bool {
    let b = name.as_bytes();
    b.len() > 10
        && b[..8].iter().all(u8::is_ascii_digit)
        && b[8] == b'T'
        && name.contains("Z-")
        && run_pid(name).is_some()
}

fn run_pid(name: &str) -> Option<&str> {
    let (_, pid) = name.rsplit_once('-')?;
    (!pid.is_empty() && pid.bytes().all(|c| c.is_ascii_digit())).then_some(pid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_newest_runs_are_kept_and_nothing_else_is_touched() {
        let dir = tempfile::tempdir().unwrap();
        let runs = RunDir::new(dir.path().to_path_buf());
        // Ended runs (pid 0 is never a process's), one per minute, each with a serial log.
        let mut names = Vec::new();
        for minute in 0..KEEP_RUNS + 3 {
            let name = format!("20261203T07{minute:02}00.5Z-publish-all-0");
            std::fs::create_dir_all(dir.path().join(&name).join("boot/lucy")).unwrap();
            std::fs::write(dir.path().join(&name).join("boot/lucy/serial.log"), "x").unwrap();
            names.push(name);
        }
        // The oldest of all belongs to a process still running: this one.
        let live = format!("20261101T000000Z-nightly-{}", std::process::id());
        std::fs::create_dir(dir.path().join(&live)).unwrap();
        for other in ["locks", "flake-changed", "notes-0"] {
            std::fs::create_dir(dir.path().join(other)).unwrap();
        }
        std::fs::write(dir.path().join("publish.json"), "{}").unwrap();

        let removed = runs.prune(KEEP_RUNS);
        // 24 run directories, 4 beyond the newest 20: the oldest, still running, stays, and
        // the three oldest ended ones go.
        let expected: Vec<PathBuf> = names[..3].iter().map(|n| dir.path().join(n)).collect();
        assert_eq!(removed, expected);
        for name in &names[3..] {
            assert!(
                dir.path().join(name).join("boot/lucy/serial.log").exists(),
                "{name}"
            );
        }
        for kept in [
            live.as_str(),
            "locks",
            "flake-changed",
            "notes-0",
            "publish.json",
        ] {
            assert!(dir.path().join(kept).exists(), "{kept}");
        }
        assert!(
            runs.prune(KEEP_RUNS).is_empty(),
            "a second prune has nothing to do"
        );
    }

    #[test]
    fn a_second_lock_on_one_cloud_waits_then_gives_up_naming_the_cloud() {
        let dir = tempfile::tempdir().unwrap();
        let runs = RunDir::new(dir.path().to_path_buf());
        let held = runs.lock_cloud("prod", Duration::ZERO).unwrap();
        let err = runs.lock_cloud("prod", Duration::ZERO).unwrap_err();
        assert!(
            matches!(&err, Error::Busy { cloud, .. } if cloud == "prod"),
            "{err}"
        );
        // Another cloud is independent, and the lock is free again once dropped.
        let _other = runs.lock_cloud("staging", Duration::ZERO).unwrap();
        drop(held);
        runs.lock_cloud("prod", Duration::ZERO).unwrap();
    }
}
