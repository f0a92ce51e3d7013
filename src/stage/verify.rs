//! `verify`: the image file is a sound, standalone qcow2; its partition table, read from inside
//! the guest disk, fits the firmware it will be tagged with; the store output is the one Nix
//! built; and its md5/sha256/sha512 are computed — the last two in one read of the image.

use crate::firmware::Boot;
use crate::image::digest::{self, Digests, MultiHasher};
use crate::image::partition::{self, FirmwareMismatch};
use crate::image::qcow2::{self, Qcow2Info};
use crate::image::{nar, reader::GuestReader};
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
    /// The output's store path.
    pub path: PathBuf,
    /// `sha256:…` or `sha256-…` as Nix registered it.
    pub nar_hash: String,
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

/// The store output `file` lives in, when it is under `/nix/store/<hash>-<name>/`.
pub fn store_output_of(file: &Path) -> Option<PathBuf> {
    let real = file.canonicalize().ok()?;
    let mut parts = real.components();
    let mut out = PathBuf::new();
    for expected in ["/", "nix", "store"] {
        let c = parts.next()?;
        if c.as_os_str() != expected {
            return None;
        }
        out.push(c);
    }
    out.push(parts.next()?);
    // The file itself must lie below the output (a single-file output is the file).
    Some(out)
}
