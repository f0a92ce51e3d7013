//! `build`: `nix build` of the profile's image, kept alive by a GC root in the run directory,
//! then the image file and Nix's registered NAR hash of the output.
//!
//! Every profile's image comes from the run's one `nix build` ([`super::batch`]). The stage's
//! Nix settings (`builders`, `store`, `eval_store`, `max_jobs`) go to Nix unchanged, over the
//! pipeline's own.

use super::{slot, Artifact, CloudOutcome, CloudResult, Context, Kind, Outcome, Slot};
use crate::firmware::Boot;
use crate::lifecycle::publish::{
    already_holds, find_current, find_held, held_note, Family, Published,
};
use crate::nix::{self, ImageInfo, MaxJobs, NarHash, StorePath};
use serde::Deserialize;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Default `build` timeout: a cold NixOS image build on a small builder takes tens of minutes.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(3600);

/// Options of the `build` stage.
#[derive(Debug, Default, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "BuildOptions")]
pub struct Options {
    /// Seconds before `nix build` (of every image at once) is stopped (default 3600).
    #[serde(default)]
    pub timeout: Option<u64>,
    /// Nix's `--builders`, over the pipeline's `builders`: e.g. `ssh-ng://builder x86_64-linux
    /// /etc/nix/builder-key 8`, several separated by `;`, or `@/etc/nix/machines`.
    #[serde(default)]
    pub builders: Option<String>,
    /// Nix's `--store`, over the pipeline's `store`: a store on this machine (`daemon`,
    /// `local`, or a chroot store such as `/srv/hephaestus-store`).
    #[serde(default)]
    pub store: Option<String>,
    /// Nix's `--eval-store`, over the pipeline's `eval_store`.
    #[serde(default)]
    pub eval_store: Option<String>,
    /// Nix's `--max-jobs`, over the pipeline's `max_jobs`: local builds at once, `auto`, or 0
    /// to build only on the builders.
    #[serde(default)]
    pub max_jobs: Option<MaxJobs>,
}

impl Options {
    /// The Nix settings this stage sets itself.
    pub fn nix_settings(&self) -> nix::Settings {
        nix::Settings {
            builders: self.builders.clone(),
            store: self.store.clone(),
            eval_store: self.eval_store.clone(),
            max_jobs: self.max_jobs,
        }
    }
}

/// Why a build did not produce a usable image.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    /// The cloud could not be asked whether it already holds the build.
    #[error("cannot ask the cloud whether it already holds the build")]
    Cloud(#[source] Arc<crate::lifecycle::publish::Error>),
    /// Nix failed, or its output could not be understood.
    #[error("building {installable} failed")]
    Nix {
        /// What was built.
        installable: String,
        /// The cause (argv, status and stderr tail for a failed command); shared when one
        /// `nix build` failed for several images.
        #[source]
        source: Arc<nix::Error>,
    },
    /// The output describes an image for other firmware than the profile's.
    #[error(
        "the flake built a {declared} image for `{profile}`, whose profile says boot: {expected}; \
         fix the image's partitionTableType / boot_mode in the flake or the profile's `boot:`"
    )]
    DeclaredFirmware {
        /// Profile name.
        profile: String,
        /// What `image-info.json` says.
        declared: Boot,
        /// What the profile says.
        expected: Boot,
    },
    /// The run directory could not be prepared.
    #[error("cannot create the GC root directory {}", path.display())]
    RunDir {
        /// The directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: Arc<std::io::Error>,
    },
    /// The run's one build did not include this image; the runner never lets this happen, so
    /// meeting it is a bug in the pipeline tool, reported rather than panicking.
    #[error("{installable} was not part of the run's build")]
    NotInBatch {
        /// What was to be built.
        installable: String,
    },
}

/// A built image: the output, the file inside it and what Nix registered about it.
#[derive(Debug, Clone)]
pub struct Built {
    /// The output's store path.
    pub store_path: StorePath,
    /// Where the output is on this machine's filesystem: the store path itself, or under the
    /// root of a chroot `store`.
    pub output_dir: PathBuf,
    /// The out-link (GC root) in the run directory.
    pub gc_root: PathBuf,
    /// Where the image is inside the output, and what the output says about it.
    pub image: ImageInfo,
    /// Nix's registered hash of the output's NAR serialisation.
    pub nar_hash: NarHash,
    /// Size of that NAR serialisation.
    pub nar_size: u64,
    /// `{UTC yyyymmddHHMM}-{hash prefix}`, named after the run's start.
    pub generation: String,
}

/// The stage: fills `build`.
pub async fn run(
    options: &Options,
    artifact: &mut Artifact,
    ctx: &Context<'_>,
) -> Result<Outcome, super::Error> {
    let ev = slot(&artifact.evaluated, Kind::Build, Slot::Evaluated)?;
    let timeout = options
        .timeout
        .map(Duration::from_secs)
        .unwrap_or(DEFAULT_TIMEOUT);
    let built = ctx.batch.built(ctx, ev, timeout).await?;
    let note = format!("{} ({})", built.image.file.display(), built.generation);
    let store_path = built.store_path.clone();
    let profile = ev.profile.clone();
    artifact.build = Some(built);
    // A store path never changes: a cloud that already holds this very build need not have it
    // read, booted or sent again, and one whose rollback holds it back must not get it.
    let name = ctx.image_name(&profile);
    let family = Family {
        profile: &profile,
        name: &name,
    };
    let mut held_notes = Vec::new();
    let mut holding = Vec::new();
    for glance in ctx.targets {
        let current = find_current(glance, &family)
            .await
            .map_err(|e| Error::Cloud(Arc::new(e)))?;
        if let Some(cur) = current.filter(|c| already_holds(c, store_path.as_str())) {
            holding.push(format!("{} ({}) in {}", name, cur.id, glance.cloud()));
            artifact.clouds.push(CloudResult {
                cloud: glance.cloud().to_string(),
                outcome: CloudOutcome::Published(Published {
                    built_at: crate::lifecycle::built_at(&cur),
                    image_id: cur.id,
                    image_name: name.clone(),
                    skipped: true,
                    held_by: None,
                    replaced: None,
                    attempts: 0,
                }),
                bytes_sent: 0,
            });
            continue;
        }
        if let Some(held) = find_held(glance, &family, store_path.as_str())
            .await
            .map_err(|e| Error::Cloud(Arc::new(e)))?
        {
            let note = held_note(&family, &held.id, store_path.as_str(), glance.cloud());
            held_notes.push(note.clone());
            artifact.clouds.push(CloudResult {
                cloud: glance.cloud().to_string(),
                outcome: CloudOutcome::Held(note),
                bytes_sent: 0,
            });
        }
    }
    artifact.published = artifact.primary_published();
    let settled = artifact.clouds.len();
    if settled > 0 && settled == ctx.targets.len() {
        if holding.is_empty() {
            return Ok(Outcome::Held(held_notes.join("; ")));
        }
        let mut stop = format!(
            "{} already {} {store_path}; nothing to verify, boot or send",
            holding.join(" and "),
            if holding.len() == 1 { "is" } else { "are" }
        );
        for note in held_notes {
            stop.push_str("; ");
            stop.push_str(&note);
        }
        return Ok(Outcome::Stop(stop));
    }
    let note = if holding.is_empty() {
        note
    } else {
        format!(
            "{note}; already current in {}: not sent there again",
            holding.join(", ")
        )
    };
    Ok(Outcome::Done(Some(note)))
}
