//! The stages of a pipeline: one closed enum, what each needs and provides, and the artifact
//! that travels along a profile's chain.
//!
//! Stages are thin orchestration: they call `nix`, `image` and `glance` and fill one slot of
//! the [`Artifact`]. The needs/provides table is what validation checks at load time, so a
//! stage never meets an empty slot at run time.

pub mod build;
pub mod evaluate;
pub mod tag;
pub mod upload;
pub mod verify;

use crate::pipeline::spec::{BuildOptions, StageEntry, StageOptions, UploadOptions};
use crate::pipeline::Profile;
use std::fmt;

pub use build::Built;
pub use evaluate::Evaluated;
pub use tag::Tagging;
pub use upload::Published;
pub use verify::Verified;

/// A slot of the artifact, filled by exactly one stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Slot {
    /// The profile itself; always there.
    Profile,
    /// What to build and how to tag it (`evaluate`).
    Evaluated,
    /// The built store path and image file (`build`).
    Build,
    /// Glance properties and tags (`tag`).
    Properties,
    /// The checked image and its digests (`verify`).
    Verified,
    /// The image in the cloud (`upload`).
    Published,
}

impl fmt::Display for Slot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Slot::Profile => "profile",
            Slot::Evaluated => "evaluated profile",
            Slot::Build => "build output",
            Slot::Properties => "Glance properties",
            Slot::Verified => "verified image and digests",
            Slot::Published => "published image",
        })
    }
}

/// One stage with its options.
#[derive(Debug, Clone)]
pub enum Stage {
    /// Resolve the profile and the policy into what to build and how to tag it.
    Evaluate,
    /// `nix build` the profile's image.
    Build(BuildOptions),
    /// Compute every Glance property and tag.
    Tag,
    /// Check the image file and compute its digests.
    Verify,
    /// Publish into Glance.
    Upload(UploadOptions),
}

impl Stage {
    /// Every stage name, in pipeline order.
    pub const NAMES: &'static [&'static str] = &["evaluate", "build", "tag", "verify", "upload"];

    /// The stage a pipeline entry names, or `None` for an unknown name.
    pub fn from_entry(entry: &StageEntry) -> Option<Stage> {
        Some(match entry.name.as_str() {
            "evaluate" => Stage::Evaluate,
            "build" => Stage::Build(match &entry.options {
                StageOptions::Build(o) => o.clone(),
                _ => BuildOptions::default(),
            }),
            "tag" => Stage::Tag,
            "verify" => Stage::Verify,
            "upload" => Stage::Upload(match &entry.options {
                StageOptions::Upload(o) => o.clone(),
                _ => UploadOptions::default(),
            }),
            _ => return None,
        })
    }

    /// The name used in pipelines and reports.
    pub fn name(&self) -> &'static str {
        match self {
            Stage::Evaluate => "evaluate",
            Stage::Build(_) => "build",
            Stage::Tag => "tag",
            Stage::Verify => "verify",
            Stage::Upload(_) => "upload",
        }
    }

    /// Slots that must be filled before this stage runs.
    pub fn needs(&self) -> &'static [Slot] {
        match self {
            Stage::Evaluate => &[Slot::Profile],
            Stage::Build(_) => &[Slot::Evaluated],
            Stage::Tag => &[Slot::Evaluated, Slot::Build],
            Stage::Verify => &[Slot::Build],
            Stage::Upload(_) => &[Slot::Properties, Slot::Verified],
        }
    }

    /// The slot this stage fills.
    pub fn provides(&self) -> Slot {
        match self {
            Stage::Evaluate => Slot::Evaluated,
            Stage::Build(_) => Slot::Build,
            Stage::Tag => Slot::Properties,
            Stage::Verify => Slot::Verified,
            Stage::Upload(_) => Slot::Published,
        }
    }

    /// The name of the stage that fills `slot`.
    pub fn provider_of(slot: Slot) -> Option<&'static str> {
        match slot {
            Slot::Profile => None,
            Slot::Evaluated => Some("evaluate"),
            Slot::Build => Some("build"),
            Slot::Properties => Some("tag"),
            Slot::Verified => Some("verify"),
            Slot::Published => Some("upload"),
        }
    }
}

/// What a profile's chain has produced so far; each stage fills one slot.
#[derive(Debug)]
pub struct Artifact {
    /// The validated profile.
    pub profile: Profile,
    /// Filled by `evaluate`.
    pub evaluated: Option<Evaluated>,
    /// Filled by `build`.
    pub build: Option<Built>,
    /// Filled by `tag`.
    pub properties: Option<Tagging>,
    /// Filled by `verify`.
    pub verified: Option<Verified>,
    /// Filled by `upload`.
    pub published: Option<Published>,
}

impl Artifact {
    /// A fresh artifact holding only its profile.
    pub fn new(profile: Profile) -> Self {
        Artifact {
            profile,
            evaluated: None,
            build: None,
            properties: None,
            verified: None,
            published: None,
        }
    }
}

/// What a run of the chain may use besides the artifact.
#[derive(Debug)]
pub struct Context<'a> {
    /// The validated pipeline.
    pub plan: &'a crate::pipeline::Plan,
    /// The firmware policy.
    pub policy: &'a crate::pipeline::Policy,
    /// The project root (relative flake paths are resolved against it).
    pub root: &'a std::path::Path,
    /// `--dry-run`: run only what has no side effect, describe the rest.
    pub dry_run: bool,
    /// When the run began (generations are named after it).
    pub started_at: time::OffsetDateTime,
    /// Where this run keeps its GC roots (`<run dir>/gc-roots`).
    pub gc_roots: std::path::PathBuf,
    /// The cloud, when the pipeline uploads (authenticated before any build starts).
    pub glance: Option<&'a crate::glance::Glance>,
    /// Draw progress bars (stderr is a terminal) instead of periodic log lines.
    pub progress_bars: bool,
}

/// How a stage ended when it did not fail.
#[derive(Debug)]
pub enum Outcome {
    /// It ran; the note says what it found or did.
    Done(Option<String>),
    /// It did not run; the note says why or what it would have done.
    Skipped(String),
}

/// Why a stage failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `evaluate` failed.
    #[error("evaluate failed")]
    Evaluate(#[from] evaluate::Error),
    /// `build` failed.
    #[error("build failed")]
    Build(#[from] build::Error),
    /// `verify` refused the image.
    #[error("verify failed")]
    Verify(#[from] verify::Error),
    /// `upload` did not publish the image.
    #[error("upload failed")]
    Upload(#[from] upload::Error),
    /// The pipeline uploads but no cloud session was opened.
    #[error(
        "stage `upload` has no cloud to publish into: set `cloud:` in the pipeline or pass --cloud"
    )]
    NoCloud,
    /// A stage ran before the stage that fills the slot it reads; validation prevents this,
    /// so meeting it is a bug in the pipeline tool, reported rather than panicking.
    #[error("stage `{stage}` found no {slot}: an earlier stage did not run")]
    MissingSlot {
        /// The stage.
        stage: &'static str,
        /// The empty slot.
        slot: Slot,
    },
}

impl crate::pipeline::Plan {
    /// The stable Glance name of `profile`'s current image (upload option `name`).
    pub fn image_name(&self, profile: &str) -> String {
        let template = self
            .stages
            .iter()
            .find_map(|s| match s {
                Stage::Upload(o) => o.name.clone(),
                _ => None,
            })
            .unwrap_or_else(|| "hephaestus-{profile}".to_string());
        template.replace("{profile}", profile)
    }
}

fn slot<'a, T>(value: &'a Option<T>, stage: &'static str, slot: Slot) -> Result<&'a T, Error> {
    value.as_ref().ok_or(Error::MissingSlot { stage, slot })
}

/// Recompute the tagging from every fact known so far (tag may run before or after verify).
fn retag(artifact: &mut Artifact, ctx: &Context<'_>) -> Result<(), Error> {
    let ev = slot(&artifact.evaluated, "tag", Slot::Evaluated)?;
    let build = artifact.build.as_ref();
    let facts = build.map(|b| tag::BuildFacts {
        store_path: b.store_path.as_str(),
        nixos_label: b.image.label.as_deref().unwrap_or(""),
        generation: &b.generation,
    });
    let digests = artifact.verified.as_ref().map(|v| tag::DigestFacts {
        sha256: &v.digests.sha256,
        md5: &v.digests.md5,
    });
    let tagging = tag::tag(
        ev,
        &ctx.plan.pipeline,
        &ctx.plan.image_name(&ev.profile),
        facts.as_ref(),
        digests.as_ref(),
    );
    artifact.properties = Some(tagging);
    Ok(())
}

/// Run one stage on `artifact`.
pub async fn run(
    stage: &Stage,
    artifact: &mut Artifact,
    ctx: &Context<'_>,
) -> Result<Outcome, Error> {
    if ctx.dry_run && matches!(stage, Stage::Build(_) | Stage::Verify | Stage::Upload(_)) {
        return Ok(Outcome::Skipped(describe(stage, artifact, ctx)));
    }
    match stage {
        Stage::Evaluate => {
            let ev = evaluate::evaluate(&artifact.profile, ctx.policy, ctx.plan, ctx.root)?;
            let note = format!("{} ({})", ev.installable, ev.boot);
            artifact.evaluated = Some(ev);
            Ok(Outcome::Done(Some(note)))
        }
        Stage::Build(options) => {
            let ev = slot(&artifact.evaluated, "build", Slot::Evaluated)?;
            let timeout = options
                .timeout
                .map(std::time::Duration::from_secs)
                .unwrap_or(build::DEFAULT_TIMEOUT);
            let built = build::build(ev, &ctx.gc_roots, timeout, ctx.started_at).await?;
            let note = format!("{} ({})", built.image.file.display(), built.generation);
            artifact.build = Some(built);
            Ok(Outcome::Done(Some(note)))
        }
        Stage::Tag => {
            retag(artifact, ctx)?;
            let t = slot(&artifact.properties, "tag", Slot::Properties)?;
            let note = format!("{} properties, {} tags", t.properties.len(), t.tags.len());
            Ok(Outcome::Done(Some(note)))
        }
        Stage::Verify => {
            let built = slot(&artifact.build, "verify", Slot::Build)?;
            let store = verify::StoreOutput {
                path: built.store_path.as_path().to_path_buf(),
                nar_hash: built.nar_hash.as_str().to_string(),
            };
            let verified =
                verify::verify(built.image.file.clone(), artifact.profile.boot, Some(store))
                    .await?;
            let note = format!(
                "qcow2 v{}, {} MiB virtual; {}; NAR hash matches; sha512 {}…",
                verified.qcow2.version,
                verified.qcow2.virtual_size >> 20,
                verified.firmware_evidence,
                &verified.digests.sha512[..16.min(verified.digests.sha512.len())]
            );
            artifact.verified = Some(verified);
            if artifact.properties.is_some() {
                // The digests complete properties an earlier `tag` left pending.
                retag(artifact, ctx)?;
            }
            Ok(Outcome::Done(Some(note)))
        }
        Stage::Upload(options) => {
            let glance = ctx.glance.ok_or(Error::NoCloud)?;
            let ev = slot(&artifact.evaluated, "upload", Slot::Evaluated)?;
            let built = slot(&artifact.build, "upload", Slot::Build)?;
            let verified = slot(&artifact.verified, "upload", Slot::Verified)?;
            let tagging = slot(&artifact.properties, "upload", Slot::Properties)?;
            let name = ctx.plan.image_name(&ev.profile);
            let up = upload::Upload {
                profile: &ev.profile,
                name: &name,
                generation: &built.generation,
                store_path: built.store_path.as_str(),
                file: &verified.file,
                digests: &verified.digests,
                virtual_size: verified.qcow2.virtual_size,
                properties: &tagging.properties,
                tags: &tagging.tags,
                min_disk: ev.min_disk,
                min_ram: ev.min_ram,
                options,
            };
            let progress = upload::Progress::default();
            let ticker = crate::pipeline::progress::start(
                &ev.profile,
                verified.digests.size,
                progress.clone(),
                ctx.progress_bars,
            );
            let result = upload::publish(glance, &up, &progress).await;
            ticker.finish();
            let published = result?;
            let note = if published.skipped {
                format!(
                    "{} already current with the same build; nothing sent",
                    published.image_id
                )
            } else {
                format!(
                    "{} is current ({} bytes sent{}{})",
                    published.image_id,
                    published.bytes_sent,
                    published
                        .replaced
                        .as_ref()
                        .map(|r| format!(", replaced {r}"))
                        .unwrap_or_default(),
                    if published.attempts > 1 {
                        format!(", {} attempts", published.attempts)
                    } else {
                        String::new()
                    }
                )
            };
            artifact.published = Some(published);
            Ok(Outcome::Done(Some(note)))
        }
    }
}

/// What a side-effecting stage would do, for `--dry-run`.
fn describe(stage: &Stage, artifact: &Artifact, ctx: &Context<'_>) -> String {
    let installable = artifact
        .evaluated
        .as_ref()
        .map(|e| e.installable.clone())
        .unwrap_or_else(|| artifact.profile.attribute.clone());
    match stage {
        Stage::Build(_) => format!("would run: nix build --json {installable}"),
        Stage::Verify => "would check the qcow2 header, the partition table against the firmware, the NAR hash, and compute md5/sha256/sha512".into(),
        Stage::Upload(_) => format!(
            "would publish `{}` into cloud `{}` as a hidden candidate, compare hashes, then make it current",
            ctx.plan.image_name(&artifact.profile.name),
            ctx.plan.cloud.as_deref().unwrap_or("(none: set `cloud:` or --cloud)")
        ),
        Stage::Evaluate | Stage::Tag => String::new(),
    }
}
