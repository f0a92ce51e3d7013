//! GC roots: the out-links that keep a run's build outputs alive until the run has finished
//! with them, so a concurrent `nix-collect-garbage` cannot take an image from under a boot
//! check or an upload.

use std::path::{Path, PathBuf};

/// The GC-root directory of one run: one out-link per profile.
#[derive(Debug, Clone)]
pub struct GcRoots {
    dir: PathBuf,
}

impl GcRoots {
    /// GC roots kept in `dir` (created on first use).
    pub fn new(dir: PathBuf) -> Self {
        GcRoots { dir }
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The out-link for `name`, with the directory created.
    pub fn link(&self, name: &str) -> std::io::Result<PathBuf> {
        std::fs::create_dir_all(&self.dir)?;
        Ok(self.dir.join(name))
    }

    /// Whether any root was made.
    pub fn exist(&self) -> bool {
        self.dir.exists()
    }

    /// Removes every out-link, which ends the roots (the directory is the run's alone).
    pub fn release(&self) -> std::io::Result<()> {
        match std::fs::remove_dir_all(&self.dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}
