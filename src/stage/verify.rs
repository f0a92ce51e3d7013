//! `verify`: the image file is a sound, standalone qcow2; its partition table, read from inside
//! the guest disk, fits the firmware it will be tagged with; the store output is the one Nix
//! built; and its md5/sha256/sha512 are computed — with the NAR hash, in one read of the image.
//!
//! When the pipeline uploads afterwards, the stage keeps only the checks that need no full
//! read ([`Depth::Structure`]: header, cluster tables, partition table and firmware): the NAR
//! hash and the digests are computed by the upload on the bytes it sends
//! ([`crate::image::stream`]), so each byte is read once per publish. `pipeline verify FILE`
//! and pipelines that do not upload keep the full check ([`Depth::Full`]).

use super::{slot, Artifact, Context, Kind, Outcome, Slot};
use crate::firmware::Boot;
use crate::image::digest::{self, Digests, MultiHasher};
use crate::image::nar;
use crate::image::partition::{self, FirmwareMismatch};
use crate::image::qcow2::{self, GuestReader, Qcow2Info};
use crate::nix::{self, StorePath};
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

/// How much of the image a verification reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Depth {
    /// Header, tables, partition table and firmware; also the NAR hash and the digests (a
    /// read of every byte).
    Full,
    /// Header, tables, partition table and firmware only: what needs no full read. The
    /// upload that follows hashes the bytes as it sends them.
    Structure,
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
    /// Size of the image file in bytes.
    pub size: u64,
    /// Digests of the image file, when the whole file was read ([`Depth::Full`]).
    pub digests: Option<Digests>,
}

pub use crate::image::nar::StoreOutput;

/// Verify `file` for `boot`, reading every byte (blocking).
///
/// With `store`, the NAR of the whole output is recomputed and the image file's digests are
/// taken from the same read of the file; without it, the file alone is hashed.
pub fn verify_file(
    file: &Path,
    boot: Boot,
    store: Option<&StoreOutput>,
) -> Result<Verified, Error> {
    verify_file_to(file, boot, store, Depth::Full)
}

/// Verify `file` for `boot` to `depth` (blocking).
pub fn verify_file_to(
    file: &Path,
    boot: Boot,
    store: Option<&StoreOutput>,
    depth: Depth,
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
    let size = std::fs::metadata(file)
        .map_err(|source| {
            Error::Digest(digest::Error::Read {
                path: file.to_path_buf(),
                source,
            })
        })?
        .len();
    let digests = match (depth, store) {
        (Depth::Structure, _) => None,
        (Depth::Full, Some(out)) => {
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
            Some(hasher.finish().map_err(Error::Digest)?)
        }
        (Depth::Full, None) => Some(digest::digest_file(file).map_err(Error::Digest)?),
    };
    Ok(Verified {
        file: file.to_path_buf(),
        qcow2: info,
        firmware_evidence: fit.evidence,
        mbr_boot_code: fit.mbr_boot_code,
        nar_checked: store.is_some() && depth == Depth::Full,
        size,
        digests,
    })
}

/// [`verify_file_to`] on a blocking thread.
pub async fn verify(
    file: PathBuf,
    boot: Boot,
    store: Option<StoreOutput>,
    depth: Depth,
) -> Result<Verified, Error> {
    tokio::task::spawn_blocking(move || verify_file_to(&file, boot, store.as_ref(), depth))
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
    verify(file, boot, store, Depth::Full).await
}

/// The stage: fills `verified` (and the artifact's digests, when it read every byte).
pub async fn run(artifact: &mut Artifact, ctx: &Context<'_>) -> Result<Outcome, super::Error> {
    let built = slot(&artifact.build, Kind::Verify, Slot::Build)?;
    let store = StoreOutput {
        path: built.output_dir.clone(),
        nar_hash: built.nar_hash.clone(),
    };
    let depth = if ctx.upload_hashes {
        Depth::Structure
    } else {
        Depth::Full
    };
    let verified = verify(
        built.image.file.clone(),
        artifact.profile.boot,
        Some(store),
        depth,
    )
    .await?;
    let hashes = match &verified.digests {
        Some(d) => format!(
            "NAR hash matches; sha512 {}…",
            &d.sha512[..16.min(d.sha512.len())]
        ),
        None => "NAR hash and digests are computed by the upload, on the bytes it sends".into(),
    };
    let note = format!(
        "qcow2 v{}, {} MiB virtual; {}; {hashes}",
        verified.qcow2.version,
        verified.qcow2.virtual_size >> 20,
        verified.firmware_evidence,
    );
    if let Some(d) = &verified.digests {
        artifact.digests = Some(d.clone());
    }
    artifact.verified = Some(verified);
    Ok(Outcome::Done(Some(note)))
}
