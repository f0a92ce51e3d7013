//! The only code that runs `nix`: typed wrappers around `nix build --json`, `nix path-info
//! --json` and `nix eval --json`, plus the layout of a built image output (`image-info.json`).
//!
//! # Public API
//! - [`build`]`(installable, out_link, timeout) -> `[`BuildOutput`]: `nix build --json
//!   --out-link`, the out-link being the GC root that keeps the output alive for the run.
//! - [`path_info`]`(&StorePath) -> `[`PathInfo`]: the registered `narHash` ([`NarHash`], raw
//!   bytes through [`NarHash::digest`]) and `narSize`.
//! - [`eval_out_path`]`(installable) -> `[`StorePath`]: the output path without building.
//! - [`read_image_info`]`(out) -> `[`ImageInfo`]: which file in the output is the image, and
//!   what the output says about it.
//! - [`Nix`] is the same API with a chosen program and extra environment (the tests use it to
//!   pass their offline `NIX_CONFIG` without touching the process environment); the free
//!   functions use [`Nix::default`], i.e. `nix` from `PATH` and the inherited environment.
//!
//! # Why it looks like this
//! Every call goes through one runner (`command`): stdin closed, stdout parsed as JSON into
//! typed values (Nix's human output is never scraped), stderr streamed line by line to
//! `tracing` at debug level (visible with `-v`) with the last lines kept for the error, a
//! timeout, and the child killed when the future is dropped.
//!
//! Output shapes differ between Nix versions (samples in `fixtures/nix-json/`):
//! - `build --json`: 2.8 returns entries in no particular order (not the order of the
//!   installables); newer Nix adds `startTime`/`stopTime`. Entries are keyed by `drvPath`.
//! - `path-info --json`: 2.8 returns an array of objects with a `path` field; newer Nix an
//!   object keyed by path (with `ca`, `signatures`, and `null` for invalid paths).
//! - `narHash`: `sha256:<nix-base32>` (older), `sha256-<base64>` (SRI, 2.8 and newer); both
//!   decode to the same 32 bytes.

mod command;
pub mod flake;
mod gc;
mod hash;
mod image_info;
mod json;
mod settings;
mod store_path;

pub use flake::{flake_ref, MissingFlake};
pub use gc::GcRoots;
pub use hash::NarHash;
pub(crate) use hash::{encode_base64, encode_nix_base32};
pub use image_info::{read_image_info, BootMode, ImageInfo, ImageInfoSource, IMAGE_INFO_PATH};
pub use json::{BuildOutput, PathInfo};
pub use settings::{check_store, real_root, Auto, For, MaxJobs, Settings};
pub use store_path::StorePath;

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::Duration;

/// How long a `nix path-info` may take; it only reads the local store database.
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(120);

/// How long `nix eval` may take: evaluating a NixOS system takes tens of seconds on a small
/// machine, never this long unless something hangs.
pub const EVAL_TIMEOUT: Duration = Duration::from_secs(600);

/// What went wrong running `nix` or reading what it built.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The program could not be started (not installed, not executable, …).
    #[error("could not run `{argv}`")]
    Spawn {
        /// The command line, shell-quoted.
        argv: String,
        /// Why the operating system refused.
        #[source]
        source: std::io::Error,
    },
    /// Reading the child's output or waiting for it failed.
    #[error("lost contact with `{argv}`")]
    Io {
        /// The command line, shell-quoted.
        argv: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The command ran and exited unsuccessfully.
    #[error("`{argv}` failed ({status}); last lines of its stderr:\n{}", tail_text(.stderr_tail))]
    Failed {
        /// The command line, shell-quoted.
        argv: String,
        /// How it exited.
        status: ExitStatus,
        /// The last lines of its stderr (at most `command::STDERR_TAIL_LINES`).
        stderr_tail: Vec<String>,
    },
    /// The command did not finish in time and was killed.
    #[error("`{argv}` did not finish within {}s and was killed; last lines of its stderr:\n{}",
        .timeout.as_secs_f64(), tail_text(.stderr_tail))]
    Timeout {
        /// The command line, shell-quoted.
        argv: String,
        /// The limit it exceeded.
        timeout: Duration,
        /// The last lines of its stderr before it was killed.
        stderr_tail: Vec<String>,
    },
    /// The command succeeded but its stdout is not the JSON we expect.
    #[error("`{argv}` printed output that is not the expected JSON (it starts with {excerpt:?})")]
    Json {
        /// The command line, shell-quoted.
        argv: String,
        /// The beginning of what it printed.
        excerpt: String,
        /// What serde could not match.
        #[source]
        source: serde_json::Error,
    },
    /// The JSON parsed but does not say what we asked for.
    #[error("`{argv}` printed JSON that {problem}")]
    Unexpected {
        /// The command line, shell-quoted.
        argv: String,
        /// What is missing or contradictory.
        problem: String,
    },
    /// A string that should be a store path is not one.
    #[error("{path:?} is not a Nix store path: {reason}")]
    InvalidStorePath {
        /// The rejected string.
        path: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A `narHash` that is neither `sha256:<nix-base32|hex>` nor `sha256-<base64>`.
    #[error("{hash:?} is not a sha256 NAR hash: {reason}")]
    InvalidNarHash {
        /// The rejected string.
        hash: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// `nix-support/image-info.json` exists but cannot be read.
    #[error("could not read {}", .path.display())]
    ImageInfoRead {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// `nix-support/image-info.json` is not the expected JSON object.
    #[error("{} is not a valid image-info.json", .path.display())]
    ImageInfoParse {
        /// The file.
        path: PathBuf,
        /// What serde could not match.
        #[source]
        source: serde_json::Error,
    },
    /// `image-info.json` names an image that does not exist or lies outside the output.
    #[error("{}: {problem}", .path.display())]
    ImageInfoInvalid {
        /// The image-info.json file.
        path: PathBuf,
        /// What is wrong with the `file` it names.
        problem: String,
    },
    /// The output has no `image-info.json` and no `*.qcow2` file.
    #[error("{} has no {IMAGE_INFO_PATH} and no *.qcow2 file", .out.display())]
    NoImage {
        /// The build output.
        out: PathBuf,
    },
    /// The output has no `image-info.json` and more than one `*.qcow2` file.
    #[error("{} has no {IMAGE_INFO_PATH} and several *.qcow2 files ({}); which one is the image is ambiguous",
        .out.display(), display_paths(.found))]
    SeveralImages {
        /// The build output.
        out: PathBuf,
        /// The candidates, sorted.
        found: Vec<PathBuf>,
    },
    /// Listing the output directory failed.
    #[error("could not list {}", .out.display())]
    ReadOutput {
        /// The build output.
        out: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

/// Result of this module's operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

fn tail_text(lines: &[String]) -> String {
    if lines.is_empty() {
        return "  (stderr was empty)".to_owned();
    }
    lines
        .iter()
        .map(|l| format!("  {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn display_paths(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// A way to run `nix`: which program, and which extra environment variables it gets on top of
/// the inherited environment.
#[derive(Debug, Clone)]
pub struct Nix {
    program: OsString,
    env: Vec<(OsString, OsString)>,
    settings: Settings,
}

impl Default for Nix {
    /// `nix` from `PATH`, inherited environment only.
    fn default() -> Self {
        Nix {
            program: OsString::from("nix"),
            env: Vec::new(),
            settings: Settings::default(),
        }
    }
}

impl Nix {
    /// Same as [`Nix::default`].
    pub fn new() -> Self {
        Self::default()
    }

    /// Runs `program` instead of `nix` from `PATH`.
    pub fn with_program(mut self, program: impl Into<OsString>) -> Self {
        self.program = program.into();
        self
    }

    /// Sets an environment variable for every command (e.g. `NIX_CONFIG`).
    pub fn with_env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Passes `settings` (builders, store, …) to every command, each the flags it takes.
    pub fn with_settings(mut self, settings: Settings) -> Self {
        self.settings = settings;
        self
    }

    /// The settings every command gets.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    fn command(&self, kind: For, args: Vec<OsString>) -> command::NixCommand<'_> {
        let mut all = args;
        // After the subcommand, before the installables: where `nix` reads its own flags.
        all.splice(1..1, self.settings.args(kind));
        command::NixCommand {
            program: &self.program,
            args: all,
            env: &self.env,
        }
    }

    /// Nix's version as (major, minor), from `nix --version`.
    pub async fn version(&self) -> Result<(u32, u32)> {
        let cmd = command::NixCommand {
            program: &self.program,
            args: vec!["--version".into()],
            env: &self.env,
        };
        let stdout = cmd.run(QUERY_TIMEOUT).await?;
        let text = String::from_utf8_lossy(&stdout);
        parse_version(&text).ok_or_else(|| Error::Unexpected {
            argv: cmd.argv(),
            problem: format!("printed no version number: {:?}", text.trim()),
        })
    }

    /// Builds every derivation in `drvs` with ONE `nix build --json --keep-going`, the
    /// out-links starting at `out_link` (`out_link`, `out_link-1`, …). Each result is matched to
    /// its derivation by `drvPath` and to its out-link by the link's target, never by position:
    /// Nix does not keep the order of the installables.
    ///
    /// Newer Nix reads a bare `.drv` path as the file itself, so from 2.13 on the outputs are
    /// asked for with `^*`; older Nix (Debian's 2.8) builds the outputs of a bare `.drv` path
    /// and knows no `^`.
    pub async fn build_derivations(
        &self,
        drvs: &[StorePath],
        out_link: &Path,
        timeout: Duration,
    ) -> Result<BTreeMap<StorePath, Realised>> {
        let caret = self.version().await? >= (2, 13);
        let mut args: Vec<OsString> = vec![
            "build".into(),
            "--json".into(),
            // One failed image must not stop the others' builds.
            "--keep-going".into(),
            "--print-build-logs".into(),
            "--out-link".into(),
            out_link.into(),
        ];
        let unique: BTreeSet<&StorePath> = drvs.iter().collect();
        for drv in &unique {
            args.push(if caret {
                format!("{drv}^*").into()
            } else {
                drv.as_path().into()
            });
        }
        let cmd = self.command(For::Build, args);
        let stdout = cmd.run(timeout).await?;
        let entries = cmd.parse_json(&stdout)?;
        let unexpected = |problem: String| Error::Unexpected {
            argv: cmd.argv(),
            problem,
        };
        let by_drv = json::build_outputs_by_drv(entries).map_err(unexpected)?;
        let links = out_links(out_link, unique.len());
        let mut result = BTreeMap::new();
        for drv in unique {
            let output = by_drv
                .get(drv)
                .cloned()
                .ok_or_else(|| unexpected(format!("has no entry for {drv}")))?;
            let link = links
                .iter()
                .find(|(_, target)| target.as_path() == output.out.as_path())
                .map(|(link, _)| link.clone())
                .ok_or_else(|| unexpected(format!("left no out-link to {}", output.out)))?;
            result.insert(drv.clone(), Realised { output, link });
        }
        Ok(result)
    }

    /// The derivation and output path of several attributes of one attribute set, in ONE
    /// evaluation: `nix eval --json <flake>#<parent> --apply <fixed function of the leaf
    /// names>`. Evaluating a NixOS system dominates the cost, and the systems share most of
    /// nixpkgs, so one evaluation for all profiles is much cheaper than one per profile.
    ///
    /// The leaf names are data, never code: they travel as a JSON list inside an escaped Nix
    /// string that the expression reads with `builtins.fromJSON`, so a `"` or `${…}` in a name
    /// is a (missing) attribute name, not Nix to evaluate.
    pub async fn eval_derivations(
        &self,
        flake: &str,
        parent: &str,
        leaves: &[&str],
    ) -> Result<BTreeMap<String, Derivation>> {
        let wanted = serde_json::Value::from(leaves.to_vec()).to_string();
        let apply = format!(
            "set: builtins.listToAttrs (map (leaf: {{ name = leaf; value = {{ drv = set.${{leaf}}.drvPath; out = set.${{leaf}}.outPath; }}; }}) (builtins.fromJSON {}))",
            nix_string(&wanted)
        );
        let cmd = self.command(
            For::Eval,
            vec![
                "eval".into(),
                "--json".into(),
                format!("{flake}#{parent}").into(),
                "--apply".into(),
                apply.into(),
            ],
        );
        let stdout = cmd.run(EVAL_TIMEOUT).await?;
        #[derive(serde::Deserialize)]
        struct Pair {
            drv: String,
            out: String,
        }
        let pairs: BTreeMap<String, Pair> = cmd.parse_json(&stdout)?;
        pairs
            .into_iter()
            .map(|(k, p)| {
                Ok((
                    k,
                    Derivation {
                        drv: StorePath::new(p.drv)?,
                        out: StorePath::new(p.out)?,
                    },
                ))
            })
            .collect()
    }

    /// The derivation and output path of one installable, without building it.
    pub async fn eval_derivation(&self, installable: &str) -> Result<Derivation> {
        let cmd = self.command(
            For::Eval,
            vec![
                "eval".into(),
                "--json".into(),
                installable.into(),
                "--apply".into(),
                "d: { drv = d.drvPath; out = d.outPath; }".into(),
            ],
        );
        let stdout = cmd.run(EVAL_TIMEOUT).await?;
        let pair: BTreeMap<String, String> = cmd.parse_json(&stdout)?;
        let get = |key: &str| {
            pair.get(key).cloned().ok_or_else(|| Error::Unexpected {
                argv: cmd.argv(),
                problem: format!("has no `{key}`"),
            })
        };
        Ok(Derivation {
            drv: StorePath::new(get("drv")?)?,
            out: StorePath::new(get("out")?)?,
        })
    }

    /// Builds one installable (`<flake>#<attribute>`) with `nix build --json --out-link
    /// <out_link>`; the out-link is a GC root that keeps the output alive until it is removed.
    pub async fn build(
        &self,
        installable: &str,
        out_link: &Path,
        timeout: Duration,
    ) -> Result<BuildOutput> {
        let cmd = self.command(
            For::Build,
            vec![
                "build".into(),
                "--json".into(),
                // Builder output goes to stderr as it happens, so `-v` shows a build in progress.
                "--print-build-logs".into(),
                "--out-link".into(),
                out_link.into(),
                installable.into(),
            ],
        );
        let stdout = cmd.run(timeout).await?;
        let entries = cmd.parse_json(&stdout)?;
        json::single_build_output(entries).map_err(|problem| Error::Unexpected {
            argv: cmd.argv(),
            problem,
        })
    }

    /// Reads the registered `narHash` and `narSize` of a store path.
    pub async fn path_info(&self, path: &StorePath) -> Result<PathInfo> {
        let cmd = self.command(
            For::Query,
            vec!["path-info".into(), "--json".into(), path.as_path().into()],
        );
        let stdout = cmd.run(QUERY_TIMEOUT).await?;
        let parsed = cmd.parse_json(&stdout)?;
        json::path_info_of(parsed, path).map_err(|problem| Error::Unexpected {
            argv: cmd.argv(),
            problem,
        })
    }

    /// The output path an installable would build to, without building it.
    pub async fn eval_out_path(&self, installable: &str) -> Result<StorePath> {
        let cmd = self.command(
            For::Eval,
            vec![
                "eval".into(),
                "--json".into(),
                format!("{installable}.outPath").into(),
            ],
        );
        let stdout = cmd.run(EVAL_TIMEOUT).await?;
        let path: String = cmd.parse_json(&stdout)?;
        StorePath::new(path)
    }
}

/// What evaluating an image attribute gives, before anything is built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Derivation {
    /// The derivation (`drvPath`).
    pub drv: StorePath,
    /// Its output (`outPath`).
    pub out: StorePath,
}

/// One built derivation of [`Nix::build_derivations`] and the out-link that roots it.
#[derive(Debug, Clone)]
pub struct Realised {
    /// What Nix reported.
    pub output: BuildOutput,
    /// The GC root.
    pub link: PathBuf,
}

/// The out-links `nix build --out-link base` makes for `count` results (`base`, `base-1`, …),
/// each with its target; links that are missing are left out.
fn out_links(base: &Path, count: usize) -> Vec<(PathBuf, PathBuf)> {
    (0..count)
        .map(|i| {
            if i == 0 {
                base.to_path_buf()
            } else {
                let mut name = base.as_os_str().to_owned();
                name.push(format!("-{i}"));
                PathBuf::from(name)
            }
        })
        .filter_map(|link| std::fs::read_link(&link).ok().map(|t| (link, t)))
        .collect()
}

/// The derivations a failed build names as failed (`builder for '….drv' failed`, `… of
/// derivation '….drv' failed`), from its stderr tail.
pub fn failed_derivations(err: &Error) -> BTreeSet<String> {
    let Error::Failed { stderr_tail, .. } = err else {
        return BTreeSet::new();
    };
    stderr_tail
        .iter()
        .filter(|line| line.contains("failed"))
        .flat_map(|line| line.split('\''))
        .filter(|word| word.starts_with("/nix/store/") && word.ends_with(".drv"))
        .map(str::to_string)
        .collect()
}

/// (major, minor) from `nix (Nix) 2.8.0`.
fn parse_version(text: &str) -> Option<(u32, u32)> {
    let word = text.split_whitespace().last()?;
    let mut parts = word.split('.');
    let major = parts.next()?.parse().ok()?;
    let minor = parts
        .next()?
        .chars()
        .take_while(char::is_ascii_digit)
        .collect::<String>()
        .parse()
        .ok()?;
    Some((major, minor))
}

/// `text` as a Nix double-quoted string literal: `\\`, `"` and `$` escaped, so nothing in it
/// is interpolated or ends the string.
pub fn nix_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '\\' | '"' | '$' => {
                out.push('\\');
                out.push(c);
            }
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// [`Nix::build`] with `nix` from `PATH`.
pub async fn build(installable: &str, out_link: &Path, timeout: Duration) -> Result<BuildOutput> {
    Nix::default().build(installable, out_link, timeout).await
}

/// [`Nix::path_info`] with `nix` from `PATH`.
pub async fn path_info(path: &StorePath) -> Result<PathInfo> {
    Nix::default().path_info(path).await
}

/// [`Nix::eval_out_path`] with `nix` from `PATH`.
pub async fn eval_out_path(installable: &str) -> Result<StorePath> {
    Nix::default().eval_out_path(installable).await
}

#[cfg(test)]
mod string_tests {
    use super::nix_string;

    #[test]
    fn versions_and_failed_derivations_are_read_from_nix_output() {
        assert_eq!(super::parse_version("nix (Nix) 2.8.0\n"), Some((2, 8)));
        assert_eq!(super::parse_version("nix (Nix) 2.24.10pre"), Some((2, 24)));
        assert_eq!(super::parse_version("garbage"), None);
        let err = super::Error::Failed {
            argv: "nix build".into(),
            status: std::os::unix::process::ExitStatusExt::from_raw(256),
            stderr_tail: vec![
                "error: builder for '/nix/store/aaa-lucy-image.drv' failed with exit code 1".into(),
                "error: 1 dependencies of derivation '/nix/store/bbb-quinn-image.drv' failed to build".into(),
                "copying path '/nix/store/ccc-x.drv' to 'ssh://b'...".into(),
            ],
        };
        let failed = super::failed_derivations(&err);
        assert_eq!(
            failed.into_iter().collect::<Vec<_>>(),
            [
                "/nix/store/aaa-lucy-image.drv",
                "/nix/store/bbb-quinn-image.drv"
            ]
        );
    }

    #[test]
    fn nix_strings_escape_quotes_backslashes_and_interpolation() {
        assert_eq!(nix_string("lucy"), "\"lucy\"");
        assert_eq!(
            nix_string(r#"a"b\c${x}"#),
            r#""a\"b\\c\${x}""#,
            "nothing ends the string or interpolates"
        );
        assert_eq!(nix_string("a\nb"), "\"a\\nb\"");
    }
}
