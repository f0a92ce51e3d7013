//! The stages of a pipeline: one closed enum, what each needs and provides, the artifact that
//! travels along a profile's chain, and a thin dispatch to one file per stage.
//!
//! Stages are thin orchestration: they call the doors (`nix`, `image`, `boot`, `glance`) and
//! the image family's rules (`lifecycle`), and fill exactly one slot of the [`Artifact`]. The
//! needs/provides table is what validation checks at load time, so a stage never meets an
//! empty slot at run time. A new stage is a new file here plus one arm in each `match` below.

pub mod batch;
pub mod boot_check;
pub mod build;
pub mod evaluate;
pub mod promote;
pub mod skip_unchanged;
pub mod tag;
pub mod upload;
pub mod verify;

use crate::glance::Glance;
use crate::image::digest::Digests;
use crate::lifecycle::Published;
use crate::profile::{Policy, Profile};
use crate::progress::Reporter;
use std::fmt;
use std::path::Path;

pub use build::Built;
pub use evaluate::Evaluated;
pub use skip_unchanged::CloudState;
pub use tag::Properties;
pub use verify::Verified;

/// A slot of the artifact, filled by exactly one stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Slot {
    /// The profile itself; always there.
    Profile,
    /// What to build and how to tag it (`evaluate`).
    Evaluated,
    /// What the cloud's current image is built from (`skip-unchanged`).
    CloudState,
    /// The built store path and image file (`build`).
    Build,
    /// Glance properties and tags (`tag`).
    Properties,
    /// The checked image and its digests (`verify`).
    Verified,
    /// The image booted under its firmware (`boot-check`).
    Booted,
    /// The image in the cloud (`upload`, `promote`).
    Published,
}

impl fmt::Display for Slot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Slot::Profile => "profile",
            Slot::Evaluated => "evaluated profile",
            Slot::CloudState => "cloud's current build",
            Slot::Build => "build output",
            Slot::Properties => "Glance properties",
            Slot::Verified => "verified image and digests",
            Slot::Booted => "boot proof",
            Slot::Published => "published image",
        })
    }
}

/// Which stage, without its options: the one table of names, needs and provides. Its doc
/// comments are what an editor shows for a stage name in a pipeline file (the JSON Schema).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, schemars::JsonSchema)]
#[schemars(rename_all = "kebab-case")]
pub enum Kind {
    /// Resolve the profile and the policy into what to build and how to tag it.
    Evaluate,
    /// End the chain early when the cloud's current image already is what the flake would
    /// build (compared by output path, without building).
    SkipUnchanged,
    /// `nix build` the profile's image.
    Build,
    /// Compute every Glance property and tag.
    Tag,
    /// Check the image file and compute its digests.
    Verify,
    /// Boot the exact image under the firmware it is tagged with.
    BootCheck,
    /// Publish into Glance.
    Upload,
    /// Copy the current image from another cloud and make it current here.
    Promote,
}

impl Kind {
    /// Every stage, in pipeline order.
    pub const ALL: [Kind; 8] = [
        Kind::Evaluate,
        Kind::SkipUnchanged,
        Kind::Build,
        Kind::Tag,
        Kind::Verify,
        Kind::BootCheck,
        Kind::Upload,
        Kind::Promote,
    ];

    /// The name used in pipelines and reports.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Evaluate => "evaluate",
            Kind::SkipUnchanged => "skip-unchanged",
            Kind::Build => "build",
            Kind::Tag => "tag",
            Kind::Verify => "verify",
            Kind::BootCheck => "boot-check",
            Kind::Upload => "upload",
            Kind::Promote => "promote",
        }
    }

    /// The stage called `name` in a pipeline file.
    pub fn from_name(name: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.name() == name)
    }

    /// Every stage name, in pipeline order.
    pub fn names() -> Vec<&'static str> {
        Kind::ALL.iter().map(|k| k.name()).collect()
    }

    /// Slots that must be filled before this stage runs: every slot it reads.
    pub fn needs(self) -> &'static [Slot] {
        match self {
            Kind::Evaluate => &[Slot::Profile],
            Kind::SkipUnchanged => &[Slot::Evaluated],
            Kind::Build => &[Slot::Evaluated],
            Kind::Tag => &[Slot::Evaluated, Slot::Build],
            Kind::Verify => &[Slot::Profile, Slot::Build],
            Kind::BootCheck => &[Slot::Properties, Slot::Verified],
            // The boot proof gates the upload: nothing becomes visible unless every check
            // passed (or the pipeline said, with a reason, not to boot).
            Kind::Upload => &[
                Slot::Evaluated,
                Slot::Build,
                Slot::Properties,
                Slot::Verified,
                Slot::Booted,
            ],
            Kind::Promote => &[Slot::Profile],
        }
    }

    /// The slot this stage fills.
    pub fn provides(self) -> Slot {
        match self {
            Kind::Evaluate => Slot::Evaluated,
            Kind::SkipUnchanged => Slot::CloudState,
            Kind::Build => Slot::Build,
            Kind::Tag => Slot::Properties,
            Kind::Verify => Slot::Verified,
            Kind::BootCheck => Slot::Booted,
            Kind::Upload | Kind::Promote => Slot::Published,
        }
    }

    /// The first stage (in pipeline order) that fills `slot`.
    pub fn provider_of(slot: Slot) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.provides() == slot)
    }

    /// Whether the stage changes anything outside the process (a dry run skips it).
    pub fn has_side_effects(self) -> bool {
        !matches!(self, Kind::Evaluate | Kind::Tag)
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One stage with its options.
#[derive(Debug, Clone)]
pub enum Stage {
    /// See [`Kind::Evaluate`].
    Evaluate,
    /// See [`Kind::SkipUnchanged`].
    SkipUnchanged,
    /// See [`Kind::Build`].
    Build(build::Options),
    /// See [`Kind::Tag`].
    Tag,
    /// See [`Kind::Verify`].
    Verify,
    /// See [`Kind::BootCheck`].
    BootCheck(boot_check::Options),
    /// See [`Kind::Upload`].
    Upload(upload::Options),
    /// See [`Kind::Promote`].
    Promote(promote::Options),
}

impl Stage {
    /// Which stage this is.
    pub fn kind(&self) -> Kind {
        match self {
            Stage::Evaluate => Kind::Evaluate,
            Stage::SkipUnchanged => Kind::SkipUnchanged,
            Stage::Build(_) => Kind::Build,
            Stage::Tag => Kind::Tag,
            Stage::Verify => Kind::Verify,
            Stage::BootCheck(_) => Kind::BootCheck,
            Stage::Upload(_) => Kind::Upload,
            Stage::Promote(_) => Kind::Promote,
        }
    }

    /// The name used in pipelines and reports.
    pub fn name(&self) -> &'static str {
        self.kind().name()
    }

    /// Whether running it changes anything outside the process (a dry run skips it): a
    /// boot check told to skip only records why.
    pub fn has_side_effects(&self) -> bool {
        let skipped_boot = matches!(
            self,
            Stage::BootCheck(boot_check::Options { skip: Some(_), .. })
        );
        self.kind().has_side_effects() && !skipped_boot
    }
}

/// What a profile's chain has produced so far; each stage fills one slot.
#[derive(Debug)]
pub struct Artifact {
    /// The validated profile.
    pub profile: Profile,
    /// Filled by `evaluate`.
    pub evaluated: Option<Evaluated>,
    /// Filled by `skip-unchanged`.
    pub cloud_state: Option<CloudState>,
    /// Filled by `build`.
    pub build: Option<Built>,
    /// Filled by `tag`.
    pub properties: Option<Properties>,
    /// Filled by `verify`.
    pub verified: Option<Verified>,
    /// Filled by `boot-check`.
    pub booted: Option<boot_check::Booted>,
    /// Filled by `upload` or `promote`: the image now current in the (first) target cloud.
    pub published: Option<Published>,
    /// What each target cloud holds of this build, filled by `build` (clouds that already
    /// hold it, or hold it back) and `upload` (the others).
    pub clouds: Vec<CloudResult>,
    /// Size and digests of the image file: computed by `verify` when it reads every byte,
    /// else by `upload` on the bytes it sent.
    pub digests: Option<Digests>,
    /// Image bytes sent to a cloud so far, failed attempts included.
    pub bytes_sent: u64,
}

/// One target cloud's part of a publish.
#[derive(Debug, Clone)]
pub struct CloudResult {
    /// The clouds.yaml entry.
    pub cloud: String,
    /// What happened there.
    pub outcome: CloudOutcome,
    /// Image bytes sent to it, failed attempts included.
    pub bytes_sent: u64,
}

/// What a target cloud holds of a build after the run.
#[derive(Debug, Clone)]
pub enum CloudOutcome {
    /// The image is current there: published now, or already (`skipped`).
    Published(Published),
    /// A rollback there holds this build back; the note says how to lift it.
    Held(String),
    /// Publishing there failed.
    Failed {
        /// The whole error chain.
        error: String,
        /// True when that cloud may hold a half-made image.
        cleanup_failed: bool,
    },
}

impl Artifact {
    /// A fresh artifact holding only its profile.
    pub fn new(profile: Profile) -> Self {
        Artifact {
            profile,
            evaluated: None,
            cloud_state: None,
            build: None,
            properties: None,
            verified: None,
            booted: None,
            published: None,
            clouds: Vec::new(),
            digests: None,
            bytes_sent: 0,
        }
    }

    /// Orders the per-cloud results as the run's target clouds are ordered.
    pub fn sort_clouds(&mut self, targets: &[Glance]) {
        let rank = |c: &CloudResult| targets.iter().position(|g| g.cloud() == c.cloud);
        self.clouds.sort_by_key(rank);
    }

    /// The image current in the first target cloud that has one.
    pub fn primary_published(&self) -> Option<Published> {
        self.clouds.iter().find_map(|c| match &c.outcome {
            CloudOutcome::Published(p) => Some(p.clone()),
            _ => None,
        })
    }
}

/// What a run of the chain may use besides the artifact.
#[derive(Debug)]
pub struct Context<'a> {
    /// The pipeline's name (`hephaestus_pipeline`).
    pub pipeline: &'a str,
    /// Flake directory (relative to `root`) or reference; `None` means the root's `nix/`.
    pub flake: Option<&'a str>,
    /// The project root.
    pub root: &'a Path,
    /// The stable image name template (`{profile}` replaced).
    pub name_template: &'a str,
    /// Generations retention keeps (SCS's `uuid_validity`).
    pub keep: u32,
    /// The firmware policy.
    pub policy: &'a Policy,
    /// Every profile of the run (stages that work on all of them at once, like
    /// `skip-unchanged`'s single evaluation, need the list).
    pub profiles: &'a [Profile],
    /// `--dry-run`: run only what has no side effect, describe the rest.
    pub dry_run: bool,
    /// When the run began (generations are named after it).
    pub started_at: time::OffsetDateTime,
    /// The GC roots that keep this run's builds alive.
    pub gc_roots: &'a crate::nix::GcRoots,
    /// This run's directory (serial logs of boot checks stay there).
    pub run_dir: &'a Path,
    /// The clouds.yaml entries the pipeline publishes into, as configured (also in a dry
    /// run, which opens no session).
    pub clouds: &'a [String],
    /// The target clouds, when the pipeline publishes (authenticated before any build
    /// starts), in the configured order.
    pub targets: &'a [Glance],
    /// True when an `upload` follows `verify`: verify then leaves the full read (NAR hash,
    /// digests) to the upload, which hashes the bytes as it sends them.
    pub upload_hashes: bool,
    /// The cloud `promote` copies from.
    pub source: Option<&'a Glance>,
    /// Shows the progress of transfers.
    pub reporter: &'a Reporter,
    /// What the run does once for every profile: the evaluation, the skip-unchanged
    /// decisions, the `nix build`.
    pub batch: &'a batch::Batch,
    /// How `nix` is run: the pipeline's and the build stage's Nix settings.
    pub nix: &'a crate::nix::Nix,
    /// Where `boot-check` remembers and finds proofs (`None`: boot every image).
    pub boot_cache: Option<&'a Path>,
}

impl Context<'_> {
    /// The first target cloud: the one of stages that work with one cloud (`skip-unchanged`,
    /// `promote`; validation refuses them with several clouds).
    pub fn glance(&self) -> Option<&Glance> {
        self.targets.first()
    }

    /// The stable Glance name of `profile`'s current image.
    pub fn image_name(&self, profile: &str) -> String {
        crate::lifecycle::stable_name(self.name_template, profile)
    }
}

/// How a stage ended when it did not fail.
#[derive(Debug)]
pub enum Outcome {
    /// It ran; the note says what it found or did.
    Done(Option<String>),
    /// It did not run; the note says why or what it would have done.
    Skipped(String),
    /// It did not run again: an earlier run's result for the same immutable input stands;
    /// the note says which.
    Cached(String),
    /// It ran and found there is nothing left to do for this profile: the rest of the chain
    /// is skipped and the image reported `unchanged`.
    Stop(String),
    /// The build is the one a rollback took out of service: the rest of the chain is skipped
    /// and the image reported `held`; the note says why and how to lift the hold.
    Held(String),
}

/// Why a stage failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `evaluate` failed.
    #[error("evaluate failed")]
    Evaluate(#[from] evaluate::Error),
    /// `skip-unchanged` could not compare.
    #[error("skip-unchanged failed")]
    SkipUnchanged(#[from] skip_unchanged::Error),
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
    /// `upload` did not publish the image into some of its clouds.
    #[error("upload failed")]
    UploadClouds(#[source] Box<upload::CloudsFailed>),
    /// `promote` did not promote the image.
    #[error("promote failed")]
    Promote(#[source] Box<promote::Error>),
    /// The stage needs a cloud session, and none was opened.
    #[error("stage `{0}` has no cloud to work with: set `cloud:` in the pipeline or pass --cloud")]
    NoCloud(Kind),
    /// A stage ran before the stage that fills the slot it reads; validation prevents this,
    /// so meeting it is a bug in the pipeline tool, reported rather than panicking.
    #[error("stage `{stage}` found no {slot}: an earlier stage did not run")]
    MissingSlot {
        /// The stage.
        stage: Kind,
        /// The empty slot.
        slot: Slot,
    },
}

impl Error {
    /// True when a failed publish may have left a half-made image in a cloud.
    pub fn cleanup_failed(&self) -> bool {
        match self {
            Error::Upload(u) => u.cleanup_failed(),
            Error::UploadClouds(u) => u.cleanup_failed(),
            Error::Promote(p) => p.cleanup_failed(),
            _ => false,
        }
    }
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

/// The filled slot `value`, or the error naming the stage and the empty slot.
pub(crate) fn slot<T>(value: &Option<T>, stage: Kind, slot: Slot) -> Result<&T, Error> {
    value.as_ref().ok_or(Error::MissingSlot { stage, slot })
}

/// Run one stage on `artifact`.
pub async fn run(
    stage: &Stage,
    artifact: &mut Artifact,
    ctx: &Context<'_>,
) -> Result<Outcome, Error> {
    if ctx.dry_run && stage.has_side_effects() {
        return Ok(Outcome::Skipped(describe(stage, artifact, ctx)));
    }
    match stage {
        Stage::Evaluate => evaluate::run(artifact, ctx),
        Stage::SkipUnchanged => skip_unchanged::run(artifact, ctx).await,
        Stage::Build(options) => build::run(options, artifact, ctx).await,
        Stage::Tag => tag::run(artifact, ctx),
        Stage::Verify => verify::run(artifact, ctx).await,
        Stage::BootCheck(options) => boot_check::run(options, artifact, ctx).await,
        Stage::Upload(options) => upload::run(options, artifact, ctx).await,
        Stage::Promote(options) => promote::run(options, artifact, ctx).await,
    }
}

/// What a side-effecting stage would do, for `--dry-run`.
fn describe(stage: &Stage, artifact: &Artifact, ctx: &Context<'_>) -> String {
    let installable = artifact
        .evaluated
        .as_ref()
        .map(|e| e.installable.clone())
        .unwrap_or_else(|| artifact.profile.attribute.clone());
    let cloud = if ctx.clouds.is_empty() {
        "(none: set `cloud:` or --cloud)".to_string()
    } else {
        ctx.clouds.join("`, `")
    };
    match stage {
        Stage::SkipUnchanged => format!(
            "would evaluate {installable}.outPath and skip the rest if the cloud already has it"
        ),
        Stage::Build(_) => {
            let flags: Vec<String> = ctx
                .nix
                .settings()
                .args(crate::nix::For::Build)
                .iter()
                .map(|a| a.to_string_lossy().into_owned())
                .collect();
            let flags = if flags.is_empty() {
                String::new()
            } else {
                format!(" {}", flags.join(" "))
            };
            format!("would build {installable} in the run's one `nix build --json{flags}`")
        }
        Stage::BootCheck(o) => format!(
            "would boot the image under {} firmware with QEMU: metadata: {}, it {}",
            artifact.profile.boot,
            o.metadata.unwrap_or(crate::boot::Metadata::None),
            o.metadata.unwrap_or(crate::boot::Metadata::None).describe()
        ),
        Stage::Verify if ctx.upload_hashes => "would check the qcow2 header and tables and the partition table against the firmware (the upload computes the NAR hash and md5/sha256/sha512 on the bytes it sends)".into(),
        Stage::Verify => "would check the qcow2 header, the partition table against the firmware, the NAR hash, and compute md5/sha256/sha512".into(),
        Stage::Upload(_) => format!(
            "would publish `{}` into cloud `{}` as a hidden candidate, from one read hashing the bytes as they go, compare hashes, then make it current",
            ctx.image_name(&artifact.profile.name),
            cloud
        ),
        Stage::Promote(o) => format!(
            "would copy the current `{}` from cloud `{}` and make it current in cloud `{}`",
            ctx.image_name(&artifact.profile.name),
            o.from,
            cloud
        ),
        Stage::Evaluate | Stage::Tag => String::new(),
    }
}
