//! Boot proofs remembered across runs. A Nix store path never changes, so a boot check that
//! passed for one is a fact about those bytes under that firmware, marker and QEMU; booting
//! them again (45–120 s per NixOS image under software emulation) proves nothing new.
//!
//! One small JSON file per proof, named by the sha256 of its key, in
//! `$HEPHAESTUS_CACHE_DIR/boot-checks` (default `$XDG_CACHE_HOME/hephaestus/boot-checks`,
//! else `~/.cache/hephaestus/boot-checks`). Deleting the directory forgets every proof; a
//! file that cannot be read or does not match its key counts as absent.

use crate::firmware::Boot;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// Everything a boot proof depends on. A change in any field is another proof.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Key {
    /// The store output of the image.
    pub store_path: String,
    /// Nix's registered NAR hash of it.
    pub nar_hash: String,
    /// The firmware type booted.
    pub boot: Boot,
    /// `OVMF` or `SeaBIOS`, and the sha256 of its code file (or `built-in`).
    pub firmware: String,
    /// The marker regex.
    pub marker: String,
    /// The first line of `qemu-system-x86_64 --version`.
    pub qemu: String,
    /// What else the check asked of the guest (e.g. the metadata it had to read).
    pub check: String,
}

impl Key {
    fn file_name(&self) -> String {
        let text = serde_json::to_string(self).unwrap_or_default();
        let digest = Sha256::digest(text.as_bytes());
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        format!("{hex}.json")
    }
}

/// A remembered proof.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Proof {
    /// What was proven.
    pub key: Key,
    /// When (RFC 3339, UTC).
    pub proven_at: String,
    /// Seconds the boot took then.
    pub seconds: f64,
    /// `tcg` or `kvm`.
    pub accel: String,
    /// The console line that matched the marker.
    pub matched_line: String,
}

/// The cache directory for boot proofs.
pub fn default_dir() -> Option<PathBuf> {
    let var = |name: &str| {
        std::env::var_os(name)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    let base = var("HEPHAESTUS_CACHE_DIR")
        .or_else(|| var("XDG_CACHE_HOME").map(|d| d.join("hephaestus")))
        .or_else(|| var("HOME").map(|h| h.join(".cache/hephaestus")))?;
    Some(base.join("boot-checks"))
}

/// The proof of `key` in `dir`, if one was remembered.
pub fn lookup(dir: &Path, key: &Key) -> Option<Proof> {
    let path = dir.join(key.file_name());
    let text = crate::bounded::read_text(&path, 64 << 10).ok()?;
    let proof: Proof = serde_json::from_str(&text).ok()?;
    (proof.key == *key).then_some(proof)
}

/// Remembers `proof` in `dir` (written whole or not at all). A cache that cannot be written
/// only costs a boot next time, so the caller logs the error and goes on.
pub fn remember(dir: &Path, proof: &Proof) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join(proof.key.file_name());
    let tmp = dir.join(format!(".{}.{}", proof.key.file_name(), std::process::id()));
    let text = serde_json::to_string_pretty(proof).map_err(std::io::Error::other)?;
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, &path)
}

/// Facts about host files (QEMU's version, a firmware's digest) that do not change while the
/// process runs: computed once per file, whatever the number of profiles booted.
static FACTS: std::sync::Mutex<Vec<(String, String)>> = std::sync::Mutex::new(Vec::new());

async fn once<F, Fut>(key: String, compute: F) -> String
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = String>,
{
    let known = FACTS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v.clone());
    if let Some(v) = known {
        return v;
    }
    let value = compute().await;
    FACTS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push((key, value.clone()));
    value
}

/// The first line of `QEMU --version`.
pub async fn qemu_version(qemu: &Path) -> String {
    once(format!("qemu {}", qemu.display()), || async {
        match tokio::process::Command::new(qemu)
            .arg("--version")
            .output()
            .await
        {
            Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout)
                .lines()
                .next()
                .unwrap_or_default()
                .trim()
                .to_owned(),
            // Unknown: no proof can match it, so nothing stale is ever reused.
            _ => String::new(),
        }
    })
    .await
}

/// `NAME sha256:HEX` of a firmware's code file, or `NAME built-in`.
pub async fn firmware_id(name: &str, code: Option<&Path>) -> String {
    let Some(path) = code else {
        return format!("{name} built-in");
    };
    once(format!("firmware {name} {}", path.display()), || async {
        let file = path.to_path_buf();
        match tokio::task::spawn_blocking(move || crate::image::digest::sha256_file(&file)).await {
            Ok(Ok(hex)) => format!("{name} sha256:{hex}"),
            _ => format!("{name} unreadable:{}", path.display()),
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> Key {
        Key {
            store_path: "/nix/store/aaaa-image".into(),
            nar_hash: "sha256-AAAA".into(),
            boot: Boot::Uefi,
            firmware: "OVMF sha256:00".into(),
            marker: "login:".into(),
            qemu: "QEMU emulator version 10.0.2".into(),
            check: "marker".into(),
        }
    }

    #[test]
    fn a_remembered_proof_is_found_only_for_the_same_key() {
        let dir = tempfile::tempdir().unwrap();
        assert!(lookup(dir.path(), &key()).is_none());
        let proof = Proof {
            key: key(),
            proven_at: "2026-12-02T00:00:00Z".into(),
            seconds: 3.5,
            accel: "tcg".into(),
            matched_line: "lucy login:".into(),
        };
        remember(dir.path(), &proof).unwrap();
        assert_eq!(lookup(dir.path(), &key()), Some(proof));
        for changed in [
            Key {
                nar_hash: "sha256-BBBB".into(),
                ..key()
            },
            Key {
                qemu: "QEMU emulator version 10.1.0".into(),
                ..key()
            },
            Key {
                firmware: "OVMF sha256:01".into(),
                ..key()
            },
            Key {
                boot: Boot::Bios,
                ..key()
            },
        ] {
            assert!(lookup(dir.path(), &changed).is_none(), "{changed:?}");
        }
    }

    #[test]
    fn a_damaged_or_foreign_file_counts_as_absent() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(key().file_name()), "{not json").unwrap();
        assert!(lookup(dir.path(), &key()).is_none());
        let other = Proof {
            key: Key {
                store_path: "/nix/store/bbbb-image".into(),
                ..key()
            },
            proven_at: String::new(),
            seconds: 0.0,
            accel: "tcg".into(),
            matched_line: String::new(),
        };
        // A file under this key's name holding another key's proof.
        std::fs::write(
            dir.path().join(key().file_name()),
            serde_json::to_string(&other).unwrap(),
        )
        .unwrap();
        assert!(lookup(dir.path(), &key()).is_none());
    }
}
