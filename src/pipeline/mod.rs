//! Pipelines: the YAML spec, the project's profiles, validation into a [`Plan`], the run
//! directory, the runner and the run report.

pub mod diagnostic;
pub mod metrics;
pub mod project;
pub mod report;
pub mod run_dir;
pub mod runner;
pub mod schema;
pub mod spec;
pub mod validate;

pub use crate::profile::{Policy, Profile};
pub use diagnostic::{Diagnostic, LoadError};
pub use project::Project;
pub use validate::{load_pipeline, validate_all, Overrides};

use crate::lifecycle::{stable_name, DEFAULT_NAME_TEMPLATE};
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
    /// clouds.yaml entries published into, after `--cloud`; empty means the one the
    /// environment names (`OS_CLOUD` / `OS_*`).
    pub clouds: Vec<String>,
    /// Flake directory or reference, after `--flake`; `None` means the root's `nix/`.
    pub flake: Option<String>,
    /// Profiles run at once.
    pub concurrency: usize,
    /// The chain, in order.
    pub stages: Vec<Stage>,
    /// The profiles, in order, after `--profile`.
    pub profiles: Vec<Profile>,
    /// The pipeline's own Nix settings (`builders`, `store`, `eval_store`, `max_jobs`).
    pub nix: crate::nix::Settings,
}

/// The cloud sessions a plan needs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CloudsNeeded {
    /// The pipeline's own clouds (`skip-unchanged`, `upload`, target of `promote`).
    pub target: bool,
    /// The cloud `promote` copies from.
    pub source: Option<String>,
}

impl Plan {
    /// The first cloud (the only one of a single-cloud pipeline).
    pub fn cloud(&self) -> Option<&str> {
        self.clouds.first().map(String::as_str)
    }

    /// The stable-name template of the images (`name:` of `upload` or `promote`).
    pub fn name_template(&self) -> &str {
        self.stages
            .iter()
            .find_map(|s| match s {
                Stage::Upload(o) => o.name.as_deref(),
                Stage::Promote(o) => o.name.as_deref(),
                _ => None,
            })
            .unwrap_or(DEFAULT_NAME_TEMPLATE)
    }

    /// The stable Glance name of `profile`'s current image.
    pub fn image_name(&self, profile: &str) -> String {
        stable_name(self.name_template(), profile)
    }

    /// Generations kept by retention (`keep` of upload or promote): SCS's `uuid_validity`.
    pub fn keep(&self) -> u32 {
        self.stages
            .iter()
            .find_map(|s| match s {
                Stage::Upload(o) => o.keep,
                Stage::Promote(o) => o.keep,
                _ => None,
            })
            .unwrap_or(crate::lifecycle::DEFAULT_KEEP)
    }

    /// The Nix settings of the run: the build stage's over the pipeline's.
    pub fn nix_settings(&self) -> crate::nix::Settings {
        let stage = self.stages.iter().find_map(|s| match s {
            Stage::Build(o) => Some(o.nix_settings()),
            _ => None,
        });
        match stage {
            Some(stage) => self.nix.under(&stage),
            None => self.nix.clone(),
        }
    }

    /// Which clouds the stages talk to.
    pub fn clouds_needed(&self) -> CloudsNeeded {
        let mut needed = CloudsNeeded::default();
        for stage in &self.stages {
            match stage {
                Stage::Upload(_) | Stage::SkipUnchanged => needed.target = true,
                Stage::Promote(o) => {
                    needed.target = true;
                    needed.source = Some(o.from.clone());
                }
                _ => {}
            }
        }
        needed
    }
}
