//! Where the image is inside a built output: `nix-support/image-info.json` when the output has
//! one, else its single top-level `*.qcow2` file.
//!
//! `image-info.json` is `{"file": "<absolute path inside the output>", "format": "qcow2",
//! "boot_mode": "uefi" | "legacy-bios", "label": "25.11", "system": "x86_64-linux"}`. `file`
//! and `format` are required; the others are reported when present, because the fallback
//! layout cannot say them either and the `verify` stage checks the disk itself. Unknown fields
//! are ignored so image builders may add their own.

use super::{Error, Result};
use crate::firmware::Boot;
use serde::{Deserialize, Serialize};
use std::path::{Component, Path, PathBuf};

/// Where the image description lives, relative to the output.
pub const IMAGE_INFO_PATH: &str = "nix-support/image-info.json";

/// How the image says it boots (`boot_mode` in `image-info.json`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BootMode {
    /// `uefi`
    Uefi,
    /// `legacy-bios`
    LegacyBios,
}

impl From<BootMode> for Boot {
    fn from(mode: BootMode) -> Boot {
        match mode {
            BootMode::Uefi => Boot::Uefi,
            BootMode::LegacyBios => Boot::Bios,
        }
    }
}

/// How [`read_image_info`] found the image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ImageInfoSource {
    /// From `nix-support/image-info.json` (its path).
    ImageInfoJson(PathBuf),
    /// The output's only `*.qcow2` file; format assumed from the name.
    SingleQcow2,
}

/// The image inside a build output, and what the output says about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageInfo {
    /// Absolute path of the image file, inside the output.
    pub file: PathBuf,
    /// Disk format as declared (`qcow2`); `verify` checks the bytes.
    pub format: String,
    /// Declared boot mode, if the output says.
    pub boot_mode: Option<BootMode>,
    /// Release label (e.g. `25.11`), if the output says.
    pub label: Option<String>,
    /// Nix system (e.g. `x86_64-linux`), if the output says.
    pub system: Option<String>,
    /// Where these facts came from.
    pub source: ImageInfoSource,
}

#[derive(Deserialize)]
struct RawImageInfo {
    file: PathBuf,
    format: String,
    boot_mode: Option<BootMode>,
    label: Option<String>,
    system: Option<String>,
}

/// Finds the image in the output `out` (a store path or an out-link to one).
pub fn read_image_info(out: &Path) -> Result<ImageInfo> {
    let info_path = out.join(IMAGE_INFO_PATH);
    use crate::bounded;
    match bounded::read(&info_path, bounded::MAX_IMAGE_INFO_BYTES) {
        Ok(bytes) => from_image_info_json(out, info_path, &bytes),
        Err(bounded::Error::Io(e)) if e.kind() == std::io::ErrorKind::NotFound => single_qcow2(out),
        Err(bounded::Error::Io(source)) => Err(Error::ImageInfoRead {
            path: info_path,
            source,
        }),
        Err(refused) => Err(Error::ImageInfoInvalid {
            path: info_path,
            problem: refused.to_string(),
        }),
    }
}

fn from_image_info_json(out: &Path, info_path: PathBuf, bytes: &[u8]) -> Result<ImageInfo> {
    let raw: RawImageInfo = match serde_json::from_slice(bytes) {
        Ok(raw) => raw,
        Err(source) => {
            return Err(Error::ImageInfoParse {
                path: info_path,
                source,
            })
        }
    };
    let invalid = |problem: String| Error::ImageInfoInvalid {
        path: info_path.clone(),
        problem,
    };
    // The JSON names the file under the store path, while `out` may be an out-link to it.
    let out_real = std::fs::canonicalize(out).map_err(|source| Error::ReadOutput {
        out: out.to_owned(),
        source,
    })?;
    // An absolute `file` names the output's logical store path (`$out/nixos.qcow2`), which
    // for a chroot store lies under the store's root on this machine, where `out` is.
    let logical = out_real
        .file_name()
        .map(|name| Path::new(super::store_path::STORE_DIR).join(name));
    let file = match logical.as_deref().map(|l| raw.file.strip_prefix(l)) {
        Some(Ok(rest)) => out_real.join(rest),
        _ if raw.file.is_absolute() => raw.file,
        _ => out_real.join(raw.file),
    };
    let escapes = file
        .components()
        .any(|c| matches!(c, Component::ParentDir | Component::CurDir));
    if escapes || !file.starts_with(&out_real) {
        return Err(invalid(format!(
            "`file` {} is not inside the output {}",
            file.display(),
            out_real.display()
        )));
    }
    if !file.is_file() {
        return Err(invalid(format!(
            "`file` {} does not exist or is not a regular file",
            file.display()
        )));
    }
    Ok(ImageInfo {
        file,
        format: raw.format,
        boot_mode: raw.boot_mode,
        label: raw.label,
        system: raw.system,
        source: ImageInfoSource::ImageInfoJson(info_path),
    })
}

fn single_qcow2(out: &Path) -> Result<ImageInfo> {
    let read_err = |source| Error::ReadOutput {
        out: out.to_owned(),
        source,
    };
    let mut found = Vec::new();
    for entry in std::fs::read_dir(out).map_err(read_err)? {
        let path = entry.map_err(read_err)?.path();
        if path.extension().is_some_and(|e| e == "qcow2") && path.is_file() {
            found.push(path);
        }
    }
    found.sort();
    let file = match found.len() {
        0 => {
            return Err(Error::NoImage {
                out: out.to_owned(),
            })
        }
        1 => found.remove(0),
        _ => {
            return Err(Error::SeveralImages {
                out: out.to_owned(),
                found,
            })
        }
    };
    // Report the path inside the store path rather than through an out-link.
    let file = std::fs::canonicalize(out)
        .ok()
        .and_then(|real| file.file_name().map(|name| real.join(name)))
        .unwrap_or(file);
    Ok(ImageInfo {
        file,
        format: "qcow2".to_owned(),
        boot_mode: None,
        label: None,
        system: None,
        source: ImageInfoSource::SingleQcow2,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn write_info(out: &Path, json: &str) {
        fs::create_dir_all(out.join("nix-support")).unwrap();
        fs::write(out.join(IMAGE_INFO_PATH), json).unwrap();
    }

    #[test]
    fn image_info_json_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let out = fs::canonicalize(dir.path()).unwrap();
        fs::write(out.join("nixos.qcow2"), b"QFI\xfb").unwrap();
        let file = out.join("nixos.qcow2");
        write_info(
            &out,
            &format!(
                r#"{{"file":"{}","format":"qcow2","boot_mode":"legacy-bios","label":"25.11","system":"x86_64-linux","extra":1}}"#,
                file.display()
            ),
        );
        let info = read_image_info(&out).unwrap();
        assert_eq!(info.file, file);
        assert_eq!(info.format, "qcow2");
        assert_eq!(info.boot_mode, Some(BootMode::LegacyBios));
        assert_eq!(Boot::from(BootMode::LegacyBios), Boot::Bios);
        assert_eq!(info.label.as_deref(), Some("25.11"));
        assert_eq!(info.system.as_deref(), Some("x86_64-linux"));
        assert_eq!(
            info.source,
            ImageInfoSource::ImageInfoJson(out.join(IMAGE_INFO_PATH))
        );
    }

    #[test]
    fn image_info_through_a_symlinked_output() {
        let dir = tempfile::tempdir().unwrap();
        let real = fs::canonicalize(dir.path()).unwrap().join("store-path");
        fs::create_dir(&real).unwrap();
        fs::write(real.join("disk.qcow2"), b"x").unwrap();
        write_info(
            &real,
            &format!(
                r#"{{"file":"{}","format":"qcow2"}}"#,
                real.join("disk.qcow2").display()
            ),
        );
        let link = dir.path().join("result");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let info = read_image_info(&link).unwrap();
        assert_eq!(info.file, real.join("disk.qcow2"));
        assert_eq!(info.boot_mode, None);
    }

    #[test]
    fn image_info_pointing_outside_or_nowhere_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let out = fs::canonicalize(dir.path()).unwrap();
        for (file, expect) in [
            ("/etc/hostname".to_owned(), "is not inside the output"),
            (
                format!("{}/../x.qcow2", out.display()),
                "is not inside the output",
            ),
            (format!("{}/missing.qcow2", out.display()), "does not exist"),
        ] {
            write_info(&out, &format!(r#"{{"file":"{file}","format":"qcow2"}}"#));
            let err = read_image_info(&out).unwrap_err();
            assert!(matches!(err, Error::ImageInfoInvalid { .. }), "{err:?}");
            assert!(err.to_string().contains(expect), "{err}");
        }
    }

    #[test]
    fn malformed_image_info_is_a_parse_error() {
        let dir = tempfile::tempdir().unwrap();
        for json in [
            "not json",
            r#"{"format":"qcow2"}"#,
            r#"{"file":"/x","format":"qcow2","boot_mode":"bios"}"#,
        ] {
            write_info(dir.path(), json);
            let err = read_image_info(dir.path()).unwrap_err();
            assert!(
                matches!(err, Error::ImageInfoParse { .. }),
                "{json}: {err:?}"
            );
            assert!(err.to_string().contains("image-info.json"), "{err}");
        }
    }

    #[test]
    fn fallback_finds_the_single_qcow2() {
        let dir = tempfile::tempdir().unwrap();
        let out = fs::canonicalize(dir.path()).unwrap();
        fs::write(out.join("notes.txt"), b"").unwrap();
        fs::create_dir(out.join("dir.qcow2")).unwrap();
        fs::write(out.join("lucy.qcow2"), b"").unwrap();
        let info = read_image_info(&out).unwrap();
        assert_eq!(info.file, out.join("lucy.qcow2"));
        assert_eq!(info.format, "qcow2");
        assert_eq!(info.source, ImageInfoSource::SingleQcow2);
    }

    #[test]
    fn fallback_with_none_or_several_images_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let err = read_image_info(dir.path()).unwrap_err();
        assert!(matches!(err, Error::NoImage { .. }), "{err:?}");
        assert!(err
            .to_string()
            .contains("no nix-support/image-info.json and no *.qcow2"));

        fs::write(dir.path().join("b.qcow2"), b"").unwrap();
        fs::write(dir.path().join("a.qcow2"), b"").unwrap();
        let err = read_image_info(dir.path()).unwrap_err();
        let Error::SeveralImages { ref found, .. } = err else {
            panic!("expected SeveralImages, got {err:?}");
        };
        assert_eq!(found.len(), 2);
        assert!(found[0].ends_with("a.qcow2"));
        assert!(err.to_string().contains("ambiguous"), "{err}");

        let err = read_image_info(&dir.path().join("missing")).unwrap_err();
        assert!(matches!(err, Error::ReadOutput { .. }), "{err:?}");
    }
}
