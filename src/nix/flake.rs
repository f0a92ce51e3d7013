//! Which flake Nix is given: a reference as written, or a local directory turned into a
//! `path:` reference.

use std::path::{Path, PathBuf};

/// The local flake directory does not exist.
#[derive(Debug, thiserror::Error)]
#[error("flake directory {} does not exist; pass --flake DIR or set `flake:` in the pipeline", .0.display())]
pub struct MissingFlake(pub PathBuf);

/// The flake reference for `flake` (a directory relative to `root`, or a flake reference);
/// `None` means the root's `nix/`.
///
/// A local directory becomes `path:<absolute dir>`: a `git+file` flake would hide files not yet
/// added to git, which surprises people editing a profile; `path:` copies what is there.
pub fn flake_ref(root: &Path, flake: Option<&str>) -> Result<String, MissingFlake> {
    let flake = flake.unwrap_or("nix");
    if flake.contains(':') {
        return Ok(flake.to_string());
    }
    let dir = root.join(flake);
    match dir.canonicalize() {
        Ok(abs) if abs.is_dir() => Ok(format!("path:{}", abs.display())),
        _ => Err(MissingFlake(dir)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directories_become_path_references_and_references_stay() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("nix")).unwrap();
        let got = flake_ref(dir.path(), None).unwrap();
        assert!(got.starts_with("path:/") && got.ends_with("/nix"), "{got}");
        assert_eq!(
            flake_ref(dir.path(), Some("github:o/r")).unwrap(),
            "github:o/r"
        );
        let err = flake_ref(dir.path(), Some("missing")).unwrap_err();
        assert!(err.to_string().contains("missing does not exist"), "{err}");
    }
}
