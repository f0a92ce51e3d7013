//! `verify`: the image file is a sound, standalone qcow2; its partition table, read from inside
//! the guest disk, fits the firmware it will be tagged with; the store output is the one Nix
//! built; and its md5/sha256/sha512 are computed — with the NAR hash, in one read of the image.

use super::{slot, Artifact, Kind, Outcome, Slot};
use crate::firmware::Boot;
use crate::image::digest::{self, Digests, MultiHasher};
use crate::image::nar;
use crate::image::partition::{self, FirmwareMismatch};
use crate::image::qcow2::{self, GuestReader, Qcow2Info};
use crate::nix::{self, NarHash, StorePath};
use serde::Serialize;
use std::path::{Path, PathBuf};

/// Why an image is not fit to publish.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Not a sound, standalone qcow2.
    #[error("the image is not a publishable qcow2")]
    Qcow2(#[source] qcow2::Error),
    /// The partition table could not be read.
    #[error("cannot read the partition table inside {}", path.display())]
    Partition {
        /// The image.
        path: PathBuf,
        /// The cause.
        #[source]
        source: partition::Error,
    },
    /// The disk's layout does not fit the profile's firmware.
    #[error("wrong firmware layout in {}", path.display())]
    Firmware {
        /// The image.
        path: PathBuf,
        /// What the disk is and what was needed.
        #[source]
        source: FirmwareMismatch,
    },
    /// The store output is not what Nix registered.
    #[error("store integrity check failed")]
    Nar(#[source] nar::Error),
    /// Nix's registered hash of the store output could not be read.
    #[error("cannot read the registered NAR hash of {path}")]
    PathInfo {
        /// The store output.
        path: StorePath,
        /// The cause.
        #[source]
        source: nix::Error,
    },
    /// The image file could not be hashed.
    #[error("cannot compute the digests of the image")]
    Digest(#[source] digest::Error),
    /// The image file is not inside the store output it came from.
    #[error("the image {} is not inside the store output {}", image.display(), output.display())]
    NotInOutput {
        /// The image file.
        image: PathBuf,
        /// The store output.
        output: PathBuf,
    },
    /// The blocking worker could not be joined.
    #[error("the verification worker stopped unexpectedly")]
    Worker(#[source] tokio::task::JoinError),
}

/// What verification established about an image.
#[derive(Debug, Clone, Serialize)]
pub struct Verified {
    /// The image file.
    pub file: PathBuf,
    /// Header facts (version, virtual size, …).
    pub qcow2: Qcow2Info,
    /// Why the partition table fits the firmware, in words.
    pub firmware_evidence: String,
    /// Whether the MBR holds boot code (what SeaBIOS runs).
    pub mbr_boot_code: bool,
    /// Whether the store output's NAR hash was recomputed and matched.
    pub nar_checked: bool,
    /// Size and digests of the image file.
    pub digests: Digests,
}

/// The store output an image must match: its path and Nix's registered `narHash`.
#[derive(Debug, Clone)]
pub struct StoreOutput {
    /// The output (a store path, or a copy of one).
    pub path: PathBuf,
    /// The hash Nix registered for it.
    pub nar_hash: NarHash,
}

/// Verify `file` for `boot` (blocking: reads the whole image).
///
/// With `store`, the NAR of the whole output is recomputed and the image file's digests are
/// taken from the same read of the file; without it, the file alone is hashed.
pub fn verify_file(
    file: &Path,
    boot: Boot,
    store: Option<&StoreOutput>,
) -> Result<Verified, Error> {
    let info = qcow2::inspect(file).map_err(Error::Qcow2)?;
    let mut guest = GuestReader::open(file).map_err(Error::Qcow2)?;
    let table = partition::read_table(&mut guest).map_err(|source| Error::Partition {
        path: file.to_path_buf(),
        source,
    })?;
    let fit = partition::check_firmware(&table, boot).map_err(|source| Error::Firmware {
        path: file.to_path_buf(),
        source,
    })?;
    let digests = match store {
        Some(out) => {
            let mut hasher = MultiHasher::new().map_err(Error::Digest)?;
            let mut feed =
                |chunk: bytes::Bytes| hasher.update(chunk).map_err(std::io::Error::other);
            let mut tap = Some(nar::Tap {
                file,
                feed: &mut feed,
                fed: false,
            });
            nar::verify_tapped(&out.path, &out.nar_hash, &mut tap).map_err(Error::Nar)?;
            if !tap.is_some_and(|t| t.fed) {
                return Err(Error::NotInOutput {
                    image: file.to_path_buf(),
                    output: out.path.clone(),
                });
            }
            hasher.finish().map_err(Error::Digest)?
        }
        None => digest::digest_file(file).map_err(Error::Digest)?,
    };
    Ok(Verified {
        file: file.to_path_buf(),
        qcow2: info,
        firmware_evidence: fit.evidence,
        mbr_boot_code: fit.mbr_boot_code,
        nar_checked: store.is_some(),
        digests,
    })
}

/// [`verify_file`] on a blocking thread.
pub async fn verify(
    file: PathBuf,
    boot: Boot,
    store: Option<StoreOutput>,
) -> Result<Verified, Error> {
    tokio::task::spawn_blocking(move || verify_file(&file, boot, store.as_ref()))
        .await
        .map_err(Error::Worker)?
}

/// Verify any image file for `boot`: when it lives in the Nix store, its store output's NAR
/// hash is checked against what Nix registered, as the stage does.
pub async fn verify_path(file: &Path, boot: Boot) -> Result<Verified, Error> {
    let store = match StorePath::containing(file) {
        Some(path) => {
            let info = nix::path_info(&path)
                .await
                .map_err(|source| Error::PathInfo {
                    path: path.clone(),
                    source,
                })?;
            Some(StoreOutput {
                path: path.as_path().to_path_buf(),
                nar_hash: info.nar_hash,
            })
        }
        None => None,
    };
    let file = file.canonicalize().unwrap_or_else(|_| file.to_path_buf());
    verify(file, boot, store).await
}

/// The stage: fills `verified`.
pub async fn run(artifact: &mut Artifact) -> Result<Outcome, super::Error> {
    let built = slot(&artifact.build, Kind::Verify, Slot::Build)?;
    let store = StoreOutput {
        path: built.output_dir.clone(),
        nar_hash: built.nar_hash.clone(),
    };
    let verified = verify(built.image.file.clone(), artifact.profile.boot, Some(store)).await?;
    let note = format!(
        "qcow2 v{}, {} MiB virtual; {}; NAR hash matches; sha512 {}…",
        verified.qcow2.version,
        verified.qcow2.virtual_size >> 20,
        verified.firmware_evidence,
        &verified.digests.sha512[..16.min(verified.digests.sha512.len())]
    );
    artifact.verified = Some(verified);
    Ok(Outcome::Done(Some(note)))
}
