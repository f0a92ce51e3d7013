//! `build`: `nix build` of the profile's image, kept alive by a GC root in the run directory,
//! then the image file and Nix's registered NAR hash of the output.

use super::{slot, Artifact, Context, Evaluated, Kind, Outcome, Slot};
use crate::firmware::Boot;
use crate::lifecycle::publish::{
    already_holds, find_current, find_held, held_note, Family, Published,
};
use crate::nix::{self, GcRoots, ImageInfo, NarHash, StorePath};
use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;

/// Default `build` timeout: a cold NixOS image build on a small builder takes tens of minutes.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(3600);

/// Options of the `build` stage.
#[derive(Debug, Default, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "BuildOptions")]
pub struct Options {
    /// Seconds before `nix build` is stopped (default 3600).
    #[serde(default)]
    pub timeout: Option<u64>,
}

/// Why a build did not produce a usable image.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The cloud could not be asked whether it already holds the build.
    #[error("cannot ask the cloud whether it already holds the build")]
    Cloud(#[source] crate::lifecycle::publish::Error),
    /// Nix failed, or its output could not be understood.
    #[error("building {installable} failed")]
    Nix {
        /// What was built.
        installable: String,
        /// The cause (argv, status and stderr tail for a failed command).
        #[source]
        source: nix::Error,
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
        source: std::io::Error,
    },
}

/// A built image: the output, the file inside it and what Nix registered about it.
#[derive(Debug, Clone)]
pub struct Built {
    /// The output's store path.
    pub store_path: StorePath,
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

/// Build `ev`'s image, rooted in `gc_roots` under the profile's name.
pub async fn build(
    ev: &Evaluated,
    gc_roots: &GcRoots,
    timeout: Duration,
    started_at: time::OffsetDateTime,
) -> Result<Built, Error> {
    let fail = |source| Error::Nix {
        installable: ev.installable.clone(),
        source,
    };
    let gc_root = gc_roots.link(&ev.profile).map_err(|source| Error::RunDir {
        path: gc_roots.dir().to_path_buf(),
        source,
    })?;
    let out = nix::build(&ev.installable, &gc_root, timeout)
        .await
        .map_err(fail)?;
    let image = nix::read_image_info(&gc_root).map_err(fail)?;
    if let Some(declared) = image.boot_mode.map(Boot::from) {
        if declared != ev.boot {
            return Err(Error::DeclaredFirmware {
                profile: ev.profile.clone(),
                declared,
                expected: ev.boot,
            });
        }
    }
    let info = nix::path_info(&out.out).await.map_err(fail)?;
    let generation = crate::lifecycle::generation(started_at, &out.out);
    Ok(Built {
        store_path: out.out,
        gc_root,
        image,
        nar_hash: info.nar_hash,
        nar_size: info.nar_size,
        generation,
    })
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
    let built = build(ev, ctx.gc_roots, timeout, ctx.started_at).await?;
    let note = format!("{} ({})", built.image.file.display(), built.generation);
    let store_path = built.store_path.clone();
    let profile = ev.profile.clone();
    artifact.build = Some(built);
    if let Some(glance) = ctx.glance {
        // A store path never changes: when the cloud already holds this very build, reading,
        // booting and sending it again would prove nothing new.
        let name = ctx.image_name(&profile);
        let family = Family {
            profile: &profile,
            name: &name,
        };
        let current = find_current(glance, &family).await.map_err(Error::Cloud)?;
        if let Some(cur) = current.filter(|c| already_holds(c, store_path.as_str())) {
            let stop = format!(
                "{name} ({}) in {} already is {store_path}; nothing to verify, boot or send",
                cur.id,
                glance.cloud()
            );
            artifact.published = Some(Published {
                image_id: cur.id,
                image_name: name,
                skipped: true,
                held_by: None,
                replaced: None,
                attempts: 0,
            });
            return Ok(Outcome::Stop(stop));
        }
        if let Some(held) = find_held(glance, &family, store_path.as_str())
            .await
            .map_err(Error::Cloud)?
        {
            return Ok(Outcome::Held(held_note(
                &family,
                &held.id,
                store_path.as_str(),
                glance.cloud(),
            )));
        }
    }
    Ok(Outcome::Done(Some(note)))
}
