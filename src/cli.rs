//! Command-line arguments: the raw flags as clap parses them. Turning them into a validated
//! plan is the commands' job (`command/`), so parsing stays free of side effects.

use clap::{Args, Parser, Subcommand, ValueHint};
use std::path::PathBuf;

/// The value name of every argument that takes a profile; shell completion offers the
/// project's profile names for exactly these.
pub const PROFILE_VALUE: &str = "PROFILE";
/// The value name of every argument that takes a pipeline; completion offers its names.
pub const PIPELINE_VALUE: &str = "NAME|FILE";

const AFTER_HELP: &str = "\
Exit codes:
  0  success (every image published, verified, or already current: skipped / unchanged)
  1  an image failed; nothing was left half-published
  2  usage or configuration error (bad YAML, unknown profile, policy violation, ...)
  3  cleanup failed: a cloud may hold a half-made image, or a change stopped half-way
     (the message names the images and what is left to fix)
  4  busy: another pipeline process held the cloud's lock past --lock-timeout

Human output goes to stderr (--log-format json: one JSON object per line); --json prints
exactly one JSON document on stdout.
Set -v (or RUST_LOG=debug) for the output of nix and the HTTP calls.";

/// Build, verify and publish the Hephaestus NixOS images into OpenStack Glance.
///
/// A pipeline (pipelines/NAME.yaml) runs a chain of stages for each profile
/// (profiles/NAME.yaml): evaluate, skip-unchanged, build, tag, verify, boot-check, upload — or
/// promote, which copies images from one cloud into another.
#[derive(Debug, Parser)]
#[command(name = "pipeline", version, after_help = AFTER_HELP, propagate_version = true)]
pub struct Cli {
    /// Project root holding pipelines/, profiles/ and nix/.
    #[arg(long, global = true, default_value = ".", value_name = "DIR", value_hint = ValueHint::DirPath)]
    pub root: PathBuf,

    /// More output on stderr (-v: debug, -vv: trace); RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    /// How stderr is written: `text` for people, or `json`, one JSON object per line (each
    /// log event and each line of the command's output), for CI log shipping.
    #[arg(
        long,
        global = true,
        value_enum,
        default_value_t = LogFormat::Text,
        value_name = "FORMAT",
        env = "HEPHAESTUS_LOG_FORMAT"
    )]
    pub log_format: LogFormat,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The format of stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Lines for people (colours on a terminal).
    Text,
    /// One JSON object per line: `timestamp`, `level`, `target`, `message` and the event's
    /// fields.
    Json,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// List the pipelines with their descriptions and the profiles with their boot mode.
    #[command(
        after_help = "Example:\n  pipeline list\n  pipeline list --json | jq '.profiles[].boot'"
    )]
    List(ListArgs),

    /// Check pipelines, profiles and the firmware policy; report every problem found.
    ///
    /// With no argument, checks every pipeline under pipelines/ and every profile.
    #[command(
        after_help = "Examples:\n  pipeline validate\n  pipeline validate publish-all\n  pipeline validate ./my-pipeline.yaml"
    )]
    Validate(ValidateArgs),

    /// Show what a pipeline would do: per profile, the stages, the firmware and every Glance
    /// property and tag.
    #[command(
        after_help = "Examples:\n  pipeline plan publish-all\n  pipeline plan publish-all --profile sunraku --cloud production"
    )]
    Plan(PlanArgs),

    /// Run a pipeline: each profile through its chain of stages, then a report.
    #[command(
        after_help = "Examples:\n  pipeline run publish-all --dry-run\n  pipeline run nightly --cloud staging --report nightly.json\n  pipeline run nightly --metrics /var/lib/prometheus-node-exporter/textfile/hephaestus.prom\n  pipeline run publish-all --profile lucy --profile sunraku --json"
    )]
    Run(RunArgs),

    /// Check one image file as the verify stage does: a sound standalone qcow2, a partition
    /// table that fits the profile's firmware, the NAR hash when the file is in the Nix store,
    /// and its md5/sha256/sha512.
    #[command(
        after_help = "Examples:\n  pipeline verify result/nixos.qcow2 --profile lucy\n  pipeline verify ./sunraku.qcow2 --profile sunraku --json"
    )]
    Verify(VerifyArgs),

    /// Boot one image file under QEMU with the firmware of a profile, as the boot-check stage
    /// does: a static pre-check, then pass on the boot marker on the serial console.
    #[command(
        after_help = "Examples:\n  pipeline boot-check result/nixos.qcow2 --profile lucy\n  pipeline boot-check ./sunraku.qcow2 --profile sunraku --accel tcg --timeout 120\n\nThe default marker is a `login:` prompt or a line `HEPHAESTUS-BOOT-OK <profile>`.\nUnder software emulation (TCG) a NixOS image takes about 45-120 s to its login prompt."
    )]
    BootCheck(BootCheckArgs),

    /// Copy each profile's current image from one cloud into another (staging → production),
    /// check the copy's hashes, and make it current there.
    #[command(
        after_help = "Examples:\n  pipeline promote --from staging --to production --require-tag tested\n  pipeline promote --from staging --to production --profile sunraku --generation 202611261200-0a1b2c3d"
    )]
    Promote(PromoteArgs),

    /// Show, per profile, the current image and the kept generations in a cloud.
    #[command(
        after_help = "Examples:\n  pipeline images --cloud staging\n  pipeline images --cloud production --profile sunraku --json"
    )]
    Images(ImagesArgs),

    /// Make an earlier generation of a profile current again (the `previous` one, or the one
    /// named by --to); the image it replaces is hidden and kept, tagged `rolled-back`.
    #[command(
        after_help = "Examples:\n  pipeline rollback lucy --cloud production\n  pipeline rollback sunraku --cloud staging --to 202611261200-0a1b2c3d\n  pipeline rollback lucy --cloud staging --name hephaestus-{profile} --json"
    )]
    Rollback(RollbackArgs),

    /// Delete old generations: keep the N newest per profile and name (the current one
    /// counting), never the current or previous one, a protected image or one tagged `keep`.
    #[command(
        after_help = "Examples:\n  pipeline prune --cloud staging --dry-run\n  pipeline prune --cloud production --profile lucy --keep 5\n  pipeline prune --cloud staging --name hephaestus-{profile} --json"
    )]
    Prune(PruneArgs),

    /// Check a cloud's image families: exactly one visible `current` per profile and name,
    /// every other generation hidden and named NAME-GENERATION, no stale candidate, no image
    /// left queued/saving/importing/killed, the hephaestus_* properties complete. --repair
    /// fixes what is safe to fix and lists every change.
    #[command(
        after_help = "Examples:\n  pipeline check --cloud production\n  pipeline check --cloud staging --profile lucy --repair\n  pipeline check --cloud staging --json\n\nExit code 1 when a problem remains (after --repair: one it could not fix)."
    )]
    Check(CheckArgs),

    /// Lift the hold a rollback put on a build: after `pipeline rollback`, runs do not publish
    /// (or promote) the rolled-back build again, and report the profile `held`, until the flake
    /// builds something else or this command is run.
    #[command(
        after_help = "Examples:\n  pipeline release lucy --cloud staging\n  pipeline release sunraku --cloud production --json"
    )]
    Release(ReleaseArgs),

    /// Print the JSON Schema of pipeline, profile or policy files, for editors and other
    /// checkers (the same as schemas/*.schema.json).
    #[command(
        after_help = "Examples:\n  pipeline schema pipeline > schemas/pipeline.schema.json\n  pipeline schema profile | jq '.properties | keys'\n\nA YAML file names its schema in its first line, for yaml-language-server:\n  # yaml-language-server: $schema=../schemas/pipeline.schema.json"
    )]
    Schema(SchemaArgs),

    /// Print a shell completion script: subcommands, flags, values, and the names of the
    /// pipelines and profiles under --root when the script is generated.
    #[command(
        after_help = "Examples, to install it (the names completed are those of the project in the current directory):\n  bash: source <(pipeline completions bash)             # in ~/.bashrc\n  zsh:  pipeline completions zsh > ~/.zfunc/_pipeline   # with fpath+=(~/.zfunc) before compinit\n  fish: pipeline completions fish > ~/.config/fish/completions/pipeline.fish"
    )]
    Completions(CompletionsArgs),

    /// Write the man pages: pipeline(1) and one pipeline-COMMAND(1) per subcommand.
    #[command(
        after_help = "Examples:\n  pipeline man | man -l -\n  pipeline man --out-dir target/man && man -M target pipeline-run"
    )]
    Man(ManArgs),

    /// Set (or with --remove clear) tags on each profile's current image, or on generation
    /// G: the tag CI sets when an image passed its tests, which `promote --require-tag` waits
    /// for. The lifecycle's own tags (candidate, current, previous, rolled-back, keep,
    /// hephaestus, profile:*) are refused.
    #[command(
        after_help = "Examples:\n  pipeline tag --cloud staging tested\n  pipeline tag --cloud staging --profile lucy --remove tested\n  pipeline tag --cloud staging --profile sunraku --generation 202611261200-0a1b2c3d tested --json\n\nWithout --profile, every profile that has images in the cloud; each must have a current\nimage (or generation G), or nothing is tagged."
    )]
    Tag(TagArgs),
}

/// `pipeline completions`
#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell.
    #[arg(value_enum, value_name = "SHELL")]
    pub shell: clap_complete::Shell,
}

/// `pipeline man`
#[derive(Debug, Args)]
pub struct ManArgs {
    /// Write every page into DIR (created if missing) instead of printing pipeline(1) on
    /// stdout.
    #[arg(long, value_name = "DIR", value_hint = ValueHint::DirPath)]
    pub out_dir: Option<PathBuf>,
}

/// `pipeline schema`
#[derive(Debug, Args)]
pub struct SchemaArgs {
    /// Which kind of file.
    #[arg(value_enum, value_name = "KIND")]
    pub document: SchemaKind,
}

/// The kinds of YAML file with a schema.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum SchemaKind {
    /// pipelines/NAME.yaml
    Pipeline,
    /// profiles/NAME.yaml
    Profile,
    /// profiles/policy.yaml
    Policy,
}

impl SchemaKind {
    /// The library's name for it.
    pub fn document(self) -> hephaestus::pipeline::schema::Document {
        use hephaestus::pipeline::schema::Document;
        match self {
            SchemaKind::Pipeline => Document::Pipeline,
            SchemaKind::Profile => Document::Profile,
            SchemaKind::Policy => Document::Policy,
        }
    }
}

/// `pipeline tag`
#[derive(Debug, Args)]
pub struct TagArgs {
    /// The tags to set (or clear).
    #[arg(value_name = "TAG", required = true)]
    pub tags: Vec<String>,
    /// clouds.yaml entry (default: OS_CLOUD, or the OS_* variables).
    #[arg(long, value_name = "CLOUD")]
    pub cloud: Option<String>,
    /// Only these profiles (repeatable; default every profile with images in the cloud).
    #[arg(long = "profile", value_name = "PROFILE")]
    pub profiles: Vec<String>,
    /// Tag this generation (`hephaestus_generation`) instead of the current image; needs
    /// exactly one --profile.
    #[arg(long, value_name = "GENERATION")]
    pub generation: Option<String>,
    /// Stable image name; `{profile}` is replaced (default: the name of the profile's
    /// current image).
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// Clear the tags instead of setting them.
    #[arg(long)]
    pub remove: bool,
    /// Print the result as one JSON document on stdout.
    #[arg(long)]
    pub json: bool,
    /// The lock.
    #[command(flatten)]
    pub lock: LockArgs,
}

/// Where the per-cloud lock lives, and how long to wait for it.
#[derive(Debug, Args)]
pub struct LockArgs {
    /// Seconds to wait for another pipeline process changing images in the same cloud (0: do
    /// not wait); past it, exit code 4.
    #[arg(long, value_name = "SECONDS", default_value_t = 3600)]
    pub lock_timeout: u64,
    /// Where runs keep their locks (default: ROOT/.run).
    #[arg(long, value_name = "DIR", env = "HEPHAESTUS_RUN_DIR")]
    pub run_dir: Option<PathBuf>,
}

/// `pipeline check`
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// clouds.yaml entry (default: OS_CLOUD, or the OS_* variables).
    #[arg(long, value_name = "CLOUD")]
    pub cloud: Option<String>,
    /// Only these profiles (repeatable; default every profile with images in the cloud).
    #[arg(long = "profile", value_name = PROFILE_VALUE)]
    pub profiles: Vec<String>,
    /// Only the images of this stable name; `{profile}` is replaced (default: every name
    /// the profile's images carry).
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// Fix what is safe to fix: delete stale candidates and dead images, hide and rename
    /// stray generations, retag extra `current` images, restore a missing current image from
    /// its previous generation.
    #[arg(long)]
    pub repair: bool,
    /// Print the result as one JSON document on stdout.
    #[arg(long)]
    pub json: bool,
    /// The lock (taken with --repair).
    #[command(flatten)]
    pub lock: LockArgs,
}

/// `pipeline release`
#[derive(Debug, Args)]
pub struct ReleaseArgs {
    /// The profile whose rolled-back builds may be published again.
    #[arg(value_name = PROFILE_VALUE)]
    pub profile: String,
    /// clouds.yaml entry (default: OS_CLOUD, or the OS_* variables).
    #[arg(long, value_name = "CLOUD")]
    pub cloud: Option<String>,
    /// Only the images of this stable name; `{profile}` is replaced (default: every name
    /// the profile's images carry).
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// Print the result as one JSON document on stdout.
    #[arg(long)]
    pub json: bool,
    /// The lock.
    #[command(flatten)]
    pub lock: LockArgs,
}

/// `pipeline rollback`
#[derive(Debug, Args)]
pub struct RollbackArgs {
    /// The profile to roll back.
    #[arg(value_name = PROFILE_VALUE)]
    pub profile: String,
    /// clouds.yaml entry (default: OS_CLOUD, or the OS_* variables).
    #[arg(long, value_name = "CLOUD")]
    pub cloud: Option<String>,
    /// Make this generation (`hephaestus_generation`) current instead of the previous one.
    #[arg(long, value_name = "GENERATION")]
    pub to: Option<String>,
    /// Stable image name; `{profile}` is replaced (default: the name of the profile's
    /// current image).
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// Print the result as one JSON document on stdout.
    #[arg(long)]
    pub json: bool,
    /// The lock.
    #[command(flatten)]
    pub lock: LockArgs,
}

/// `pipeline prune`
#[derive(Debug, Args)]
pub struct PruneArgs {
    /// clouds.yaml entry (default: OS_CLOUD, or the OS_* variables).
    #[arg(long, value_name = "CLOUD")]
    pub cloud: Option<String>,
    /// Only these profiles (repeatable; default every profile with images in the cloud).
    #[arg(long = "profile", value_name = PROFILE_VALUE)]
    pub profiles: Vec<String>,
    /// Generations to keep per profile and name, the current one included.
    #[arg(long, value_name = "N", default_value_t = 3,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub keep: u32,
    /// Only the images of this stable name; `{profile}` is replaced (default: every name
    /// the profile's images carry).
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// List what would be deleted, with the reason; delete nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Print the result as one JSON document on stdout.
    #[arg(long)]
    pub json: bool,
    /// The lock (not taken with --dry-run).
    #[command(flatten)]
    pub lock: LockArgs,
}

/// `pipeline boot-check`
#[derive(Debug, Args)]
pub struct BootCheckArgs {
    /// The image file (qcow2).
    #[arg(value_name = "FILE", value_hint = ValueHint::FilePath)]
    pub file: PathBuf,
    /// The profile whose firmware to boot with.
    #[arg(long, value_name = PROFILE_VALUE)]
    pub profile: String,
    /// Seconds before the boot counts as hung (default 300 under TCG, 60 under KVM).
    #[arg(long, value_name = "SECONDS")]
    pub timeout: Option<u64>,
    /// Regex a console line must match; `{profile}` is replaced (with --metadata none only).
    #[arg(long, value_name = "REGEX")]
    pub marker: Option<String>,
    /// config-drive: attach a fresh config drive and require `<its random host name> login:`,
    /// as a publishing pipeline does; none: boot without metadata and wait for the marker.
    #[arg(long, value_name = "METADATA", default_value = "config-drive")]
    pub metadata: hephaestus::boot::Metadata,
    /// Guest memory in MiB (default 1024).
    #[arg(long, value_name = "MIB")]
    pub memory: Option<u32>,
    /// Accelerator: tcg, kvm, or auto (KVM only if a probe boot under KVM works).
    #[arg(long, value_name = "ACCEL")]
    pub accel: Option<hephaestus::boot::Accel>,
    /// Where the serial log is kept (default: ROOT/.run).
    #[arg(long, value_name = "DIR", env = "HEPHAESTUS_RUN_DIR")]
    pub run_dir: Option<PathBuf>,
    /// Print the result as one JSON document on stdout.
    #[arg(long)]
    pub json: bool,
}

/// `pipeline promote`
#[derive(Debug, Args)]
pub struct PromoteArgs {
    /// clouds.yaml entry to copy from.
    #[arg(long, value_name = "CLOUD")]
    pub from: String,
    /// clouds.yaml entry to copy into.
    #[arg(long, value_name = "CLOUD")]
    pub to: String,
    /// Only these profiles (repeatable; default all).
    #[arg(long = "profile", value_name = PROFILE_VALUE)]
    pub profiles: Vec<String>,
    /// Promote this generation (`hephaestus_generation`) instead of the current image.
    #[arg(long, value_name = "GENERATION")]
    pub generation: Option<String>,
    /// Refuse images that lack this tag (set by CI once an image passed its tests).
    #[arg(long, value_name = "TAG")]
    pub require_tag: Option<String>,
    /// Stable image name; `{profile}` is replaced (default `hephaestus-{profile}`).
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// Say what would be copied; copy nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Print the report as one JSON document on stdout.
    #[arg(long)]
    pub json: bool,
    /// Also write the JSON report to FILE.
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,
    /// Seconds to wait for another run publishing into the target cloud (0: do not wait); past
    /// it, exit code 4.
    #[arg(long, value_name = "SECONDS", default_value_t = 3600)]
    pub lock_timeout: u64,
    /// Where runs keep their locks (default: ROOT/.run); the same as `pipeline run`'s, so
    /// both queue on one lock per cloud.
    #[arg(long, value_name = "DIR", env = "HEPHAESTUS_RUN_DIR")]
    pub run_dir: Option<PathBuf>,
}

/// `pipeline images`
#[derive(Debug, Args)]
pub struct ImagesArgs {
    /// clouds.yaml entry (default: OS_CLOUD, or the OS_* variables).
    #[arg(long, value_name = "CLOUD")]
    pub cloud: Option<String>,
    /// Only these profiles (repeatable).
    #[arg(long = "profile", value_name = PROFILE_VALUE)]
    pub profiles: Vec<String>,
    /// Print one JSON document on stdout.
    #[arg(long)]
    pub json: bool,
    /// Exit with code 5 when a current image was built longer ago than DURATION (`36h`,
    /// `7d`, `2w`; units s, m, h, d, w), or than its own SCS `replace_frequency` allows.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub stale_after: Option<std::time::Duration>,
}

#[cfg(test)]
mod duration_tests {
    #[test]
    fn durations_take_a_number_and_a_unit() {
        assert_eq!(super::parse_duration("36h").unwrap().as_secs(), 36 * 3600);
        assert_eq!(super::parse_duration("7d").unwrap().as_secs(), 7 * 86_400);
        assert_eq!(super::parse_duration("2w").unwrap().as_secs(), 14 * 86_400);
        for bad in ["7", "d", "7y", "-1d", "99999999999999999999d"] {
            assert!(super::parse_duration(bad).is_err(), "{bad}");
        }
    }
}

/// `36h`, `7d`: a number and one of the units s, m, h, d, w.
pub fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    let unit_at = text
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("`{text}` has no unit: write e.g. `36h` or `7d`"))?;
    let (number, unit) = text.split_at(unit_at);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("`{text}` does not start with a number: write e.g. `7d`"))?;
    let seconds = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 604_800,
        _ => {
            return Err(format!(
                "unknown unit `{unit}` in `{text}`: use s, m, h, d or w"
            ))
        }
    };
    number
        .checked_mul(seconds)
        .map(std::time::Duration::from_secs)
        .ok_or_else(|| format!("`{text}` is too long"))
}

/// `pipeline verify`
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The image file.
    #[arg(value_name = "FILE", value_hint = ValueHint::FilePath)]
    pub file: PathBuf,
    /// The profile whose firmware the image must fit.
    #[arg(long, value_name = PROFILE_VALUE)]
    pub profile: String,
    /// Print the result as one JSON document on stdout.
    #[arg(long)]
    pub json: bool,
}

/// `pipeline list`
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Print one JSON document on stdout.
    #[arg(long)]
    pub json: bool,
}

/// `pipeline validate`
#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// Pipeline names (pipelines/NAME.yaml) or YAML files; all pipelines when none given.
    #[arg(value_name = PIPELINE_VALUE)]
    pub targets: Vec<String>,
    /// Print the problems as one JSON document on stdout.
    #[arg(long)]
    pub json: bool,
}

/// What selects and adjusts a pipeline: shared by `plan` and `run`.
#[derive(Debug, Args)]
pub struct TargetArgs {
    /// Pipeline name (pipelines/NAME.yaml) or path to a YAML file.
    #[arg(value_name = PIPELINE_VALUE)]
    pub target: String,
    /// Only these profiles (repeatable); they must be in the pipeline.
    #[arg(long = "profile", value_name = PROFILE_VALUE)]
    pub profiles: Vec<String>,
    /// clouds.yaml entry to publish into, instead of the pipeline's `cloud:` / `clouds:`;
    /// repeat it to publish into several clouds at once, from one read of each image.
    #[arg(long, value_name = "CLOUD")]
    pub cloud: Vec<String>,
    /// Flake directory or reference, instead of the pipeline's `flake:`.
    #[arg(long, value_name = "DIR|REF")]
    pub flake: Option<String>,
}

/// `pipeline plan`
#[derive(Debug, Args)]
pub struct PlanArgs {
    /// Which pipeline, and what to override.
    #[command(flatten)]
    pub target: TargetArgs,
    /// Print the plan as one JSON document on stdout.
    #[arg(long)]
    pub json: bool,
}

/// `pipeline run`
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Which pipeline, and what to override.
    #[command(flatten)]
    pub target: TargetArgs,
    /// Print the run report as one JSON document on stdout.
    #[arg(long)]
    pub json: bool,
    /// Also write the JSON run report to FILE.
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,
    /// Write the run's metrics to FILE in node_exporter's textfile format (atomically: a
    /// temporary file in the same directory, renamed over FILE).
    #[arg(long, value_name = "FILE", conflicts_with = "dry_run")]
    pub metrics: Option<PathBuf>,
    /// Run only what has no side effect (evaluate, tag) and say what the rest would do.
    #[arg(long)]
    pub dry_run: bool,
    /// Keep the GC roots of the built images after the run (under the run directory).
    #[arg(long)]
    pub keep_outputs: bool,
    /// Boot every image, even one an earlier run already proved (the proofs are kept in
    /// ~/.cache/hephaestus/boot-checks, or $HEPHAESTUS_CACHE_DIR/boot-checks).
    #[arg(long)]
    pub no_boot_cache: bool,
    /// Where runs keep GC roots, logs and locks (default: ROOT/.run).
    #[arg(long, value_name = "DIR", env = "HEPHAESTUS_RUN_DIR")]
    pub run_dir: Option<PathBuf>,
    /// Seconds to wait for another run publishing into the same cloud (0: do not wait); past
    /// it, exit code 4.
    #[arg(long, value_name = "SECONDS", default_value_t = 3600)]
    pub lock_timeout: u64,
}
