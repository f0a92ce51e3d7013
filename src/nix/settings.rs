//! The Nix settings a pipeline may set for its builds (`builders`, `store`, `eval-store`,
//! `max-jobs`), passed to `nix` unchanged as its own command-line flags.
//!
//! Nix is the build farm's scheduler: these flags are all the pipeline needs to send its builds
//! to remote builders, so it has no scheduler of its own. The values are Nix's own syntax and
//! are not interpreted here, except that `store` must be a store on this machine: the image is
//! verified, booted and uploaded from here, so it has to be readable here.

use serde::{Deserialize, Serialize};
use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// `max-jobs`: a number of local build jobs (0 sends every build to the builders), or `auto`
/// (one per CPU).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(untagged)]
pub enum MaxJobs {
    /// This many builds at once on this machine; 0 builds only on the `builders`.
    Count(u32),
    /// One build per CPU of this machine.
    Auto(Auto),
}

/// The word `auto`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub enum Auto {
    /// `auto`
    #[serde(rename = "auto")]
    Auto,
}

impl std::fmt::Display for MaxJobs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MaxJobs::Count(n) => write!(f, "{n}"),
            MaxJobs::Auto(_) => f.write_str("auto"),
        }
    }
}

/// Which `nix` subcommand the flags are for: each takes only the flags that mean something to
/// it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum For {
    /// `nix build`: all four.
    Build,
    /// `nix eval`: where derivations are written (`--store`, `--eval-store`).
    Eval,
    /// `nix path-info`: which store is asked (`--store`).
    Query,
}

/// Nix settings of a run; `None` leaves Nix's own configuration (nix.conf, `NIX_CONFIG`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Settings {
    /// `--builders`: Nix's machine specification, e.g. `ssh-ng://builder x86_64-linux
    /// /etc/nix/key 8`, several separated by `;`, or `@FILE` for a machines file.
    pub builders: Option<String>,
    /// `--store`: the store that builds and holds the images.
    pub store: Option<String>,
    /// `--eval-store`: where evaluation writes derivations.
    pub eval_store: Option<String>,
    /// `--max-jobs`.
    pub max_jobs: Option<MaxJobs>,
}

impl Settings {
    /// `over`'s values where it sets them, else these.
    pub fn under(&self, over: &Settings) -> Settings {
        Settings {
            builders: over.builders.clone().or_else(|| self.builders.clone()),
            store: over.store.clone().or_else(|| self.store.clone()),
            eval_store: over.eval_store.clone().or_else(|| self.eval_store.clone()),
            max_jobs: over.max_jobs.or(self.max_jobs),
        }
    }

    /// True when nothing is set.
    pub fn is_empty(&self) -> bool {
        *self == Settings::default()
    }

    /// The flags for `command`, in Nix's own spelling.
    pub fn args(&self, command: For) -> Vec<OsString> {
        let mut args: Vec<OsString> = Vec::new();
        let mut flag = |name: &str, value: &Option<String>| {
            if let Some(v) = value {
                args.push(name.into());
                args.push(v.into());
            }
        };
        flag("--store", &self.store);
        if command != For::Query {
            flag("--eval-store", &self.eval_store);
        }
        if command == For::Build {
            flag("--builders", &self.builders);
            flag("--max-jobs", &self.max_jobs.map(|m| m.to_string()));
        }
        args
    }

    /// Where the store's files are on this machine: `/` for the usual store, the root of a
    /// chroot store (`/srv/store`, `local?root=/srv/store`); `None` for a store elsewhere.
    pub fn real_root(&self) -> Option<PathBuf> {
        match &self.store {
            None => Some(PathBuf::from("/")),
            Some(store) => real_root(store),
        }
    }

    /// `logical` (a path under `/nix/store`) where this machine's filesystem has it.
    pub fn real_path(&self, logical: &Path) -> PathBuf {
        match self.real_root() {
            Some(root) if root != Path::new("/") => {
                root.join(logical.strip_prefix("/").unwrap_or(logical))
            }
            _ => logical.to_path_buf(),
        }
    }
}

/// The root of `store` on this machine, or `None` when it is not on this machine.
pub fn real_root(store: &str) -> Option<PathBuf> {
    let (scheme, params) = store.split_once('?').unwrap_or((store, ""));
    let param = |key: &str| {
        params
            .split('&')
            .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
    };
    match scheme {
        "auto" | "daemon" => Some(PathBuf::from("/")),
        s if s.starts_with("unix://") => Some(PathBuf::from("/")),
        "local" => Some(PathBuf::from(param("root").unwrap_or("/"))),
        s if s.starts_with('/') => Some(PathBuf::from(s)),
        _ => None,
    }
}

/// Why a `store` value is refused: the pipeline reads the image from the store's files.
pub fn check_store(store: &str) -> Result<(), String> {
    match real_root(store) {
        Some(root) if root.is_absolute() => Ok(()),
        Some(_) => Err(format!(
            "store `{store}` has a relative root: write it as an absolute path"
        )),
        None => Err(format!(
            "store `{store}` is not on this machine, but the image is verified, booted and \
             uploaded from here"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_command_gets_only_its_flags_in_nix_spelling() {
        let s = Settings {
            builders: Some("ssh-ng://b x86_64-linux - 4".into()),
            store: Some("/srv/store".into()),
            eval_store: Some("auto".into()),
            max_jobs: Some(MaxJobs::Count(0)),
        };
        let text = |c| {
            s.args(c)
                .iter()
                .map(|a| a.to_string_lossy().into_owned())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            text(For::Build),
            [
                "--store",
                "/srv/store",
                "--eval-store",
                "auto",
                "--builders",
                "ssh-ng://b x86_64-linux - 4",
                "--max-jobs",
                "0"
            ]
        );
        assert_eq!(
            text(For::Eval),
            ["--store", "/srv/store", "--eval-store", "auto"]
        );
        assert_eq!(text(For::Query), ["--store", "/srv/store"]);
        assert!(Settings::default().args(For::Build).is_empty());
    }

    #[test]
    fn a_stage_setting_overrides_the_pipelines_key_by_key() {
        let pipeline = Settings {
            builders: Some("@/etc/nix/machines".into()),
            max_jobs: Some(MaxJobs::Auto(Auto::Auto)),
            ..Settings::default()
        };
        let stage = Settings {
            max_jobs: Some(MaxJobs::Count(0)),
            ..Settings::default()
        };
        let merged = pipeline.under(&stage);
        assert_eq!(merged.builders.as_deref(), Some("@/etc/nix/machines"));
        assert_eq!(merged.max_jobs, Some(MaxJobs::Count(0)));
    }

    #[test]
    fn only_stores_on_this_machine_are_accepted_and_chroots_are_mapped() {
        for ok in [
            "auto",
            "daemon",
            "local",
            "unix:///nix/var/nix/daemon-socket/socket",
        ] {
            check_store(ok).unwrap();
            assert_eq!(real_root(ok), Some(PathBuf::from("/")), "{ok}");
        }
        for chroot in ["/srv/store", "local?root=/srv/store"] {
            check_store(chroot).unwrap();
            let s = Settings {
                store: Some(chroot.into()),
                ..Settings::default()
            };
            assert_eq!(
                s.real_path(Path::new("/nix/store/abc-x")),
                PathBuf::from("/srv/store/nix/store/abc-x")
            );
        }
        for remote in [
            "ssh-ng://builder",
            "ssh://builder",
            "https://cache.example.org",
        ] {
            let err = check_store(remote).unwrap_err();
            assert!(err.contains("not on this machine"), "{err}");
        }
        assert!(check_store("local?root=rel").is_err());
        assert_eq!(
            Settings::default().real_path(Path::new("/nix/store/abc-x")),
            PathBuf::from("/nix/store/abc-x")
        );
    }

    #[test]
    fn max_jobs_reads_a_number_or_auto() {
        let n: MaxJobs = serde_json::from_str("0").unwrap();
        assert_eq!(n.to_string(), "0");
        let a: MaxJobs = serde_json::from_str("\"auto\"").unwrap();
        assert_eq!(a.to_string(), "auto");
        assert!(serde_json::from_str::<MaxJobs>("\"many\"").is_err());
    }
}
