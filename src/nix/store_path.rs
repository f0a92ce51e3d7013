//! A validated top-level Nix store path (`/nix/store/<32-char hash>-<name>`).

use super::{Error, Result};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::Path;

pub(super) const STORE_DIR: &str = "/nix/store/";
const HASH_LEN: usize = 32;

/// A top-level store path such as `/nix/store/gj30…-hephaestus-lucy-image`: the store prefix,
/// a 32-character nix-base32 hash, `-`, and a name without `/`. Checked when built, so code
/// holding one never needs to re-check (provenance properties, GC roots, `path-info`).
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct StorePath(String);

impl StorePath {
    /// Validates `path`.
    pub fn new(path: impl Into<String>) -> Result<Self> {
        let path = path.into();
        let invalid = |reason| Error::InvalidStorePath {
            path: path.clone(),
            reason,
        };
        let Some(rest) = path.strip_prefix(STORE_DIR) else {
            return Err(invalid("it does not start with /nix/store/"));
        };
        let (hash, name) = match (rest.get(..HASH_LEN), rest.get(HASH_LEN..)) {
            (Some(hash), Some(name)) => (hash, name),
            _ => return Err(invalid("it is too short for a 32-character hash")),
        };
        if !hash
            .bytes()
            .all(|b| b"0123456789abcdfghijklmnpqrsvwxyz".contains(&b))
        {
            return Err(invalid("its hash part is not nix-base32"));
        }
        let Some(name) = name.strip_prefix('-') else {
            return Err(invalid("no `-` after the hash part"));
        };
        if name.is_empty() {
            return Err(invalid("its name is empty"));
        }
        if name.contains('/') {
            return Err(invalid(
                "it is a path inside a store path, not a store path",
            ));
        }
        Ok(StorePath(path))
    }

    /// The path as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The path as a [`Path`].
    pub fn as_path(&self) -> &Path {
        Path::new(&self.0)
    }

    /// The 32-character hash part (its first 8 characters name an image generation).
    pub fn hash_part(&self) -> &str {
        &self.0[STORE_DIR.len()..STORE_DIR.len() + HASH_LEN]
    }

    /// The name after the hash, e.g. `hephaestus-lucy-image`.
    pub fn name(&self) -> &str {
        &self.0[STORE_DIR.len() + HASH_LEN + 1..]
    }

    /// The store path `file` lives in (or is), after following symlinks: `None` when the
    /// file is not under `/nix/store/` or cannot be resolved.
    pub fn containing(file: &Path) -> Option<StorePath> {
        let real = file.canonicalize().ok()?;
        let rest = real.to_str()?.strip_prefix(STORE_DIR)?;
        let top = rest.split('/').next()?;
        StorePath::new(format!("{STORE_DIR}{top}")).ok()
    }
}

impl TryFrom<String> for StorePath {
    type Error = Error;
    fn try_from(s: String) -> Result<Self> {
        StorePath::new(s)
    }
}

impl From<StorePath> for String {
    fn from(p: StorePath) -> String {
        p.0
    }
}

impl AsRef<Path> for StorePath {
    fn as_ref(&self) -> &Path {
        self.as_path()
    }
}

impl fmt::Display for StorePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for StorePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StorePath({:?})", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "/nix/store/gj30fvivgzcbgq02dwqa5q5plbhd216n-hephaestus-lucy-image";

    #[test]
    fn parts() {
        let p = StorePath::new(GOOD).unwrap();
        assert_eq!(p.hash_part(), "gj30fvivgzcbgq02dwqa5q5plbhd216n");
        assert_eq!(p.name(), "hephaestus-lucy-image");
        assert_eq!(p.as_path(), Path::new(GOOD));
        assert_eq!(p.to_string(), GOOD);
    }

    #[test]
    fn rejects_what_is_not_a_store_path() {
        for bad in [
            "",
            "/tmp/result",
            "nix/store/gj30fvivgzcbgq02dwqa5q5plbhd216n-x",
            "/nix/store/gj30fvivgzcbgq02dwqa5q5plbhd216",
            "/nix/store/gj30fvivgzcbgq02dwqa5q5plbhd216n",
            "/nix/store/gj30fvivgzcbgq02dwqa5q5plbhd216n-",
            "/nix/store/gj30fvivgzcbgq02dwqa5q5plbhd216nx",
            "/nix/store/gj30fvivgzcbgq02dwqa5q5plbhd216e-x",
            "/nix/store/gj30fvivgzcbgq02dwqa5q5plbhd216n-x/nixos.qcow2",
            "/nix/store/gj30fvivgzcbgq02dwqa5q5plbhdé6n-x",
        ] {
            let err = StorePath::new(bad).unwrap_err();
            assert!(
                matches!(err, Error::InvalidStorePath { .. }),
                "{bad}: {err:?}"
            );
        }
    }

    #[test]
    fn deserialises_only_valid_paths() {
        let p: StorePath = serde_json::from_str(&format!("\"{GOOD}\"")).unwrap();
        assert_eq!(p.as_str(), GOOD);
        let err = serde_json::from_str::<StorePath>("\"/tmp/x\"").unwrap_err();
        assert!(
            err.to_string().contains("does not start with /nix/store/"),
            "{err}"
        );
    }
}
