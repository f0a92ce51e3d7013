//! Pipelines: the YAML spec, its validation into a [`Plan`], the runner and the run report.

pub mod progress;
pub mod report;
pub mod runner;
pub mod spec;
pub mod validate;

pub use validate::{load_pipeline, Diagnostic, LoadError, Overrides, Policy, Profile, Project};

use crate::stage::Stage;
use std::path::PathBuf;

/// A validated pipeline: which profiles go through which stages, where to.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The pipeline's name.
    pub pipeline: String,
    /// One line for humans.
    pub description: String,
    /// The file it came from (as shown in messages).
    pub file: PathBuf,
    /// clouds.yaml entry, after `--cloud`.
    pub cloud: Option<String>,
    /// Flake directory or reference, after `--flake`; `None` means the root's `nix/`.
    pub flake: Option<String>,
    /// Profiles run at once.
    pub concurrency: usize,
    /// The chain, in order.
    pub stages: Vec<Stage>,
    /// The profiles, in order, after `--profile`.
    pub profiles: Vec<Profile>,
}
