//! The run directory (`.run/` by default): one fresh directory per run, holding its GC roots
//! and serial logs, and the per-cloud locks that keep two runs on one machine from changing
//! the same images at once.

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

#[cfg(test)]
mod tests {
    use super::*;

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
