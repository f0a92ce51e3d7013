//! The stages of a pipeline: one closed enum, what each needs and provides, and the artifact
//! that travels along a profile's chain.
//!
//! Stages are thin orchestration: they call `nix`, `image` and `glance` and fill one slot of
//! the [`Artifact`]. The needs/provides table is what validation checks at load time, so a
//! stage never meets an empty slot at run time.

pub mod build;
pub mod evaluate;
pub mod promote;
pub mod tag;
pub mod upload;
pub mod verify;

use crate::firmware::Boot;
use crate::pipeline::spec::{
    BootCheckOptions, BuildOptions, PromoteOptions, StageEntry, StageOptions, UploadOptions,
};
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
    /// What the cloud's current image is built from (`skip-unchanged`).
    CloudState,
    /// The image booted under its firmware (`boot-check`).
    Booted,
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
            Slot::CloudState => "cloud's current build",
            Slot::Booted => "boot proof",
        })
    }
}

/// One stage with its options.
#[derive(Debug, Clone)]
pub enum Stage {
    /// Resolve the profile and the policy into what to build and how to tag it.
    Evaluate,
    /// End the chain early when the cloud's current image already is what the flake would
    /// build (compared by output path, without building).
    SkipUnchanged,
    /// `nix build` the profile's image.
    Build(BuildOptions),
    /// Compute every Glance property and tag.
    Tag,
    /// Check the image file and compute its digests.
    Verify,
    /// Boot the exact image under the firmware it is tagged with.
    BootCheck(BootCheckOptions),
    /// Publish into Glance.
    Upload(UploadOptions),
    /// Copy the current image from another cloud and make it current here.
    Promote(PromoteOptions),
}

impl Stage {
    /// Every stage name, in pipeline order.
    pub const NAMES: &'static [&'static str] = &[
        "evaluate",
        "skip-unchanged",
        "build",
        "tag",
        "verify",
        "boot-check",
        "upload",
        "promote",
    ];

    /// The stage a pipeline entry names, or `None` for an unknown name.
    pub fn from_entry(entry: &StageEntry) -> Option<Stage> {
        Some(match entry.name.as_str() {
            "evaluate" => Stage::Evaluate,
            "skip-unchanged" => Stage::SkipUnchanged,
            "build" => Stage::Build(match &entry.options {
                StageOptions::Build(o) => o.clone(),
                _ => BuildOptions::default(),
            }),
            "tag" => Stage::Tag,
            "verify" => Stage::Verify,
            "boot-check" => Stage::BootCheck(match &entry.options {
                StageOptions::BootCheck(o) => o.clone(),
                _ => BootCheckOptions::default(),
            }),
            "upload" => Stage::Upload(match &entry.options {
                StageOptions::Upload(o) => o.clone(),
                _ => UploadOptions::default(),
            }),
            // Without options there is no source cloud: validation reports it.
            "promote" => match &entry.options {
                StageOptions::Promote(o) => Stage::Promote(o.clone()),
                _ => return None,
            },
            _ => return None,
        })
    }

    /// The name used in pipelines and reports.
    pub fn name(&self) -> &'static str {
        match self {
            Stage::Evaluate => "evaluate",
            Stage::SkipUnchanged => "skip-unchanged",
            Stage::Build(_) => "build",
            Stage::Tag => "tag",
            Stage::Verify => "verify",
            Stage::BootCheck(_) => "boot-check",
            Stage::Upload(_) => "upload",
            Stage::Promote(_) => "promote",
        }
    }

    /// Slots that must be filled before this stage runs.
    pub fn needs(&self) -> &'static [Slot] {
        match self {
            Stage::Evaluate => &[Slot::Profile],
            Stage::SkipUnchanged => &[Slot::Evaluated],
            Stage::Build(_) => &[Slot::Evaluated],
            Stage::Tag => &[Slot::Evaluated, Slot::Build],
            Stage::Verify => &[Slot::Build],
            Stage::BootCheck(_) => &[Slot::Properties, Slot::Verified],
            Stage::Upload(_) => &[Slot::Properties, Slot::Verified],
            Stage::Promote(_) => &[Slot::Profile],
        }
    }

    /// The slot this stage fills.
    pub fn provides(&self) -> Slot {
        match self {
            Stage::Evaluate => Slot::Evaluated,
            Stage::SkipUnchanged => Slot::CloudState,
            Stage::Build(_) => Slot::Build,
            Stage::Tag => Slot::Properties,
            Stage::Verify => Slot::Verified,
            Stage::BootCheck(_) => Slot::Booted,
            Stage::Upload(_) | Stage::Promote(_) => Slot::Published,
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
            Slot::CloudState => Some("skip-unchanged"),
            Slot::Booted => Some("boot-check"),
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
    /// Filled by `upload` or `promote`.
    pub published: Option<Published>,
    /// Set by `skip-unchanged` when the cloud's current image (this id) already is this build.
    pub unchanged: Option<String>,
    /// Filled by `boot-check`.
    pub booted: Option<crate::boot::BootReport>,
    /// Image bytes sent to a cloud so far, failed attempts included.
    pub bytes_sent: u64,
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
            unchanged: None,
            booted: None,
            bytes_sent: 0,
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
    /// This run's directory (serial logs of boot checks stay there).
    pub run_dir: std::path::PathBuf,
    /// The cloud, when the pipeline uploads (authenticated before any build starts).
    pub glance: Option<&'a crate::glance::Glance>,
    /// The cloud `promote` copies from.
    pub source: Option<&'a crate::glance::Glance>,
    /// Output paths evaluated up front for `skip-unchanged`: profile → path, or the error.
    pub out_paths: &'a std::collections::BTreeMap<String, Result<crate::nix::StorePath, String>>,
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
    /// It ran and found there is nothing left to do for this profile: the rest of the chain
    /// is skipped and the image reported `unchanged`.
    Stop(String),
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
    /// The image did not boot.
    #[error("boot-check failed")]
    BootCheck(#[source] Box<crate::boot::Error>),
    /// `upload` did not publish the image.
    #[error("upload failed")]
    Upload(#[source] Box<upload::Error>),
    /// `promote` did not promote the image.
    #[error("promote failed")]
    Promote(#[source] Box<promote::Error>),
    /// The output path of the profile's image could not be evaluated.
    #[error("cannot evaluate the output path of {0} without building it: {1}")]
    OutPath(String, String),
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

impl From<crate::boot::Error> for Error {
    fn from(e: crate::boot::Error) -> Self {
        Error::BootCheck(Box::new(e))
    }
}

impl From<upload::Error> for Error {
    fn from(e: upload::Error) -> Self {
        Error::Upload(Box::new(e))
    }
}

impl From<promote::Error> for Error {
    fn from(e: promote::Error) -> Self {
        Error::Promote(Box::new(e))
    }
}

impl crate::pipeline::Plan {
    /// The stable Glance name of `profile`'s current image (upload option `name`).
    pub fn image_name(&self, profile: &str) -> String {
        let template = self
            .stages
            .iter()
            .find_map(|s| match s {
                Stage::Upload(o) => o.name.clone(),
                Stage::Promote(o) => o.name.clone(),
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
    let side_effects = matches!(
        stage,
        Stage::SkipUnchanged
            | Stage::Build(_)
            | Stage::Verify
            | Stage::BootCheck(_)
            | Stage::Upload(_)
            | Stage::Promote(_)
    );
    if ctx.dry_run && side_effects {
        return Ok(Outcome::Skipped(describe(stage, artifact, ctx)));
    }
    match stage {
        Stage::Evaluate => {
            let ev = evaluate::evaluate(&artifact.profile, ctx.policy, ctx.plan, ctx.root)?;
            let note = format!("{} ({})", ev.installable, ev.boot);
            artifact.evaluated = Some(ev);
            Ok(Outcome::Done(Some(note)))
        }
        Stage::SkipUnchanged => {
            let glance = ctx.glance.ok_or(Error::NoCloud)?;
            let ev = slot(&artifact.evaluated, "skip-unchanged", Slot::Evaluated)?;
            let out = match ctx.out_paths.get(&ev.profile) {
                Some(Ok(path)) => path,
                Some(Err(e)) => return Err(Error::OutPath(ev.installable.clone(), e.clone())),
                None => {
                    return Err(Error::OutPath(
                        ev.installable.clone(),
                        "not evaluated".into(),
                    ))
                }
            };
            let name = ctx.plan.image_name(&ev.profile);
            let current = upload::find_current(glance, &ev.profile, &name).await?;
            match current {
                Some(cur) if cur.property("hephaestus_store_path") == Some(out.as_str()) => {
                    let note = format!(
                        "{} ({}) already is {}; nothing to build or send",
                        name,
                        cur.id,
                        out.as_str()
                    );
                    artifact.unchanged = Some(cur.id);
                    Ok(Outcome::Stop(note))
                }
                Some(cur) => Ok(Outcome::Done(Some(format!(
                    "changed: {} is {}, the flake now gives {}",
                    cur.id,
                    cur.property("hephaestus_store_path")
                        .unwrap_or("(no store path)"),
                    out.as_str()
                )))),
                None => Ok(Outcome::Done(Some(format!(
                    "no current `{name}` yet; will build {}",
                    out.as_str()
                )))),
            }
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
        Stage::BootCheck(options) => {
            let verified = slot(&artifact.verified, "boot-check", Slot::Verified)?;
            let tagging = slot(&artifact.properties, "boot-check", Slot::Properties)?;
            // Boot with the firmware the image will be tagged with, whatever else says.
            let boot = match tagging
                .properties
                .get("hw_firmware_type")
                .map(String::as_str)
            {
                Some("bios") => Boot::Bios,
                _ => Boot::Uefi,
            };
            let profile = &artifact.profile.name;
            let opts = boot_options(options, profile, Some(verified.digests.sha256.clone()))?;
            let dir = ctx.run_dir.join("boot").join(profile);
            let report = crate::boot::boot_check(&verified.file, boot, &opts, &dir).await?;
            let note = format!(
                "booted under {} ({}) in {:.1}s: {:?}; serial log {}",
                boot,
                report.accel_used,
                report.seconds,
                report.matched_line,
                report.serial_log.display()
            );
            artifact.booted = Some(report);
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
            artifact.bytes_sent += progress.sent();
            let published = result?;
            // Retention never fails a publish that succeeded: what it could not do is logged.
            let retention = if published.skipped {
                String::new()
            } else {
                let keep = options.keep.unwrap_or(crate::lifecycle::DEFAULT_KEEP);
                match crate::lifecycle::apply_retention(glance, &ev.profile, &name, keep).await {
                    Ok(r) if !r.deleted.is_empty() || !r.hidden.is_empty() || !r.ok() => format!(
                        "; retention (keep {keep}): {} deleted, {} hidden, {} failed",
                        r.deleted.len(),
                        r.hidden.len(),
                        r.failed.len()
                    ),
                    Ok(_) => String::new(),
                    Err(e) => {
                        tracing::warn!(
                            "{}: retention not applied: {}",
                            ev.profile,
                            crate::pipeline::runner::error_chain(&e)
                        );
                        String::new()
                    }
                }
            };
            let note = if published.skipped {
                format!(
                    "{} already current with the same build; nothing sent",
                    published.image_id
                )
            } else {
                format!(
                    "{} is current ({} bytes sent{}{}){retention}",
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
        Stage::Promote(options) => {
            let target = ctx.glance.ok_or(Error::NoCloud)?;
            let source = ctx.source.ok_or(Error::NoCloud)?;
            let profile = artifact.profile.name.clone();
            let name = ctx.plan.image_name(&profile);
            let progress = upload::Progress::default();
            let ticker = crate::pipeline::progress::start(&profile, 0, progress.clone(), false);
            let result =
                promote::promote(source, target, &profile, &name, options, &progress).await;
            ticker.finish();
            artifact.bytes_sent += progress.sent();
            let promoted = result?;
            let note = if promoted.skipped {
                format!(
                    "{} in {} already is the same build; nothing copied",
                    promoted.image_id,
                    target.cloud()
                )
            } else {
                format!(
                    "{} from {} is current in {} ({} bytes copied{})",
                    name,
                    source.cloud(),
                    target.cloud(),
                    promoted.bytes_sent,
                    promoted
                        .replaced
                        .as_ref()
                        .map(|r| format!(", replaced {r}"))
                        .unwrap_or_default()
                )
            };
            artifact.published = Some(promoted);
            Ok(Outcome::Done(Some(note)))
        }
    }
}

/// The default boot marker: the `login:` prompt of real NixOS images, or the line
/// `HEPHAESTUS-BOOT-OK <profile>` that an image may print to say it booted (the fixture images
/// do; a shell or kernel never starts a line with it by echoing).
pub const DEFAULT_MARKER: &str = r"(?m)^(?:\S+ login:|HEPHAESTUS-BOOT-OK {profile}\b)";

/// Boot options from the stage's options for `profile`.
pub fn boot_options(
    options: &BootCheckOptions,
    profile: &str,
    expected_sha256: Option<String>,
) -> Result<crate::boot::BootOptions, crate::boot::Error> {
    let template = options.marker.as_deref().unwrap_or(DEFAULT_MARKER);
    let marker =
        crate::boot::parse_marker(&template.replace("{profile}", &regex::escape(profile)))?;
    let mut opts = crate::boot::BootOptions::new(marker);
    opts.timeout = options.timeout.map(std::time::Duration::from_secs);
    if let Some(m) = options.memory {
        opts.memory_mib = m;
    }
    if let Some(a) = options.accel {
        opts.accel = a;
    }
    opts.expected_sha256 = expected_sha256;
    Ok(opts)
}

/// What a side-effecting stage would do, for `--dry-run`.
fn describe(stage: &Stage, artifact: &Artifact, ctx: &Context<'_>) -> String {
    let installable = artifact
        .evaluated
        .as_ref()
        .map(|e| e.installable.clone())
        .unwrap_or_else(|| artifact.profile.attribute.clone());
    match stage {
        Stage::SkipUnchanged => format!(
            "would evaluate {installable}.outPath and skip the rest if cloud `{}` already has it",
            ctx.plan.cloud.as_deref().unwrap_or("(none)")
        ),
        Stage::Build(_) => format!("would run: nix build --json {installable}"),
        Stage::BootCheck(_) => format!(
            "would boot the image under {} firmware with QEMU and wait for its boot marker",
            artifact.profile.boot
        ),
        Stage::Verify => "would check the qcow2 header, the partition table against the firmware, the NAR hash, and compute md5/sha256/sha512".into(),
        Stage::Upload(_) => format!(
            "would publish `{}` into cloud `{}` as a hidden candidate, compare hashes, then make it current",
            ctx.plan.image_name(&artifact.profile.name),
            ctx.plan.cloud.as_deref().unwrap_or("(none: set `cloud:` or --cloud)")
        ),
        Stage::Promote(o) => format!(
            "would copy the current `{}` from cloud `{}` into cloud `{}` and make it current there",
            ctx.plan.image_name(&artifact.profile.name),
            o.from,
            ctx.plan.cloud.as_deref().unwrap_or("(none: set `cloud:` or --to)")
        ),
        Stage::Evaluate | Stage::Tag => String::new(),
    }
}
