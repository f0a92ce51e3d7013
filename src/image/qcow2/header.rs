//! qcow2 header soundness: parses the (big-endian) header of a built image and refuses, with the
//! reason it matters, anything that must not be published: a backing file, an external data
//! file, encryption, a dirty or corrupt image, features this reader does not know.
//!
//! Layout and bit meanings follow QEMU's `docs/interop/qcow2.txt`. The guest reader
//! ([`super::GuestReader`]) reads the disk through the same [`Header`].

use serde::Serialize;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

/// `QFI\xfb`: the first four bytes of every qcow image.
pub const MAGIC: [u8; 4] = *b"QFI\xfb";
/// Length of a version 2 header; version 3 headers say their own length (at least 104).
const V2_HEADER_LEN: u32 = 72;
const V3_MIN_HEADER_LEN: u32 = 104;
/// qemu-img refuses longer backing file names; a longer one means a damaged header.
const MAX_BACKING_FILE_NAME: u32 = 1023;
/// QEMU's own limit on the L1 table (`QCOW_MAX_L1_SIZE`, 32 MiB of entries).
const MAX_L1_BYTES: u64 = 32 << 20;
/// QEMU's own limit on snapshots (`QCOW_MAX_SNAPSHOTS`).
const MAX_SNAPSHOTS: u32 = 65536;

/// Incompatible feature bits (header offset 72, version 3).
pub mod incompatible {
    /// The image was not closed cleanly; refcounts may be stale (lazy refcounts).
    pub const DIRTY: u64 = 1 << 0;
    /// QEMU found the metadata inconsistent and marked the image.
    pub const CORRUPT: u64 = 1 << 1;
    /// Guest data lives in an external file named by a header extension.
    pub const EXTERNAL_DATA_FILE: u64 = 1 << 2;
    /// `compression_type` (header byte 104) is not zlib.
    pub const COMPRESSION_TYPE: u64 = 1 << 3;
    /// L2 entries are 128 bits with a 32-subcluster bitmap.
    pub const EXTENDED_L2: u64 = 1 << 4;
    /// Every bit above is understood by this module; any other set bit is refused.
    pub const KNOWN: u64 = DIRTY | CORRUPT | EXTERNAL_DATA_FILE | COMPRESSION_TYPE | EXTENDED_L2;
}

/// Compatible feature bit 0: refcounts are updated lazily (and the dirty bit guards them).
pub(super) const COMPATIBLE_LAZY_REFCOUNTS: u64 = 1 << 0;

const EXT_END: u32 = 0;
const EXT_BACKING_FORMAT: u32 = 0xe279_2aca;
const EXT_FEATURE_NAMES: u32 = 0x6803_f857;
const EXT_FULL_DISK_ENCRYPTION: u32 = 0x0537_be77;
const EXT_DATA_FILE: u32 = 0x4441_5441;

/// How compressed clusters are encoded (header byte 104, version 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CompressionType {
    /// Raw deflate (the only type of version 2, and the default of version 3).
    Zlib,
    /// zstd; this reader does not decode it.
    Zstd,
}

impl fmt::Display for CompressionType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CompressionType::Zlib => "zlib",
            CompressionType::Zstd => "zstd",
        })
    }
}

/// The parsed qcow2 header and the header extensions this pipeline cares about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// 2 or 3.
    pub version: u32,
    /// Where the backing file name is stored; 0 when there is none.
    pub backing_file_offset: u64,
    /// Length of the backing file name.
    pub backing_file_size: u32,
    /// log2 of the cluster size (9..=21).
    pub cluster_bits: u32,
    /// Virtual (guest) disk size in bytes.
    pub size: u64,
    /// 0 none, 1 AES (legacy), 2 LUKS.
    pub crypt_method: u32,
    /// Number of L1 entries.
    pub l1_size: u32,
    /// Host offset of the L1 table.
    pub l1_table_offset: u64,
    /// Host offset of the refcount table.
    pub refcount_table_offset: u64,
    /// Clusters occupied by the refcount table.
    pub refcount_table_clusters: u32,
    /// Number of internal snapshots.
    pub nb_snapshots: u32,
    /// Host offset of the snapshot table.
    pub snapshots_offset: u64,
    /// Version 3 incompatible feature bits (0 for version 2); see [`incompatible`].
    pub incompatible_features: u64,
    /// Version 3 compatible feature bits.
    pub compatible_features: u64,
    /// Version 3 autoclear feature bits.
    pub autoclear_features: u64,
    /// log2 of the refcount width in bits (4 for version 2).
    pub refcount_order: u32,
    /// Header length in bytes (72 for version 2).
    pub header_length: u32,
    /// Encoding of compressed clusters.
    pub compression_type: CompressionType,
    /// Backing file name, when `backing_file_offset` is set and the name is readable.
    pub backing_file: Option<String>,
    /// Backing file format from its header extension.
    pub backing_format: Option<String>,
    /// External data file name from its header extension.
    pub data_file: Option<String>,
    /// Whether a full-disk-encryption header extension is present.
    pub encryption_extension: bool,
    /// Feature names from the feature name table: (type 0/1/2, bit, name).
    pub feature_names: Vec<(u8, u8, String)>,
}

/// A set incompatible feature bit this reader does not know, with its name when the image's
/// feature name table gives one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FeatureBit {
    /// Bit number in the incompatible feature field.
    pub bit: u8,
    /// Name from the image's feature name table.
    pub name: Option<String>,
}

impl fmt::Display for FeatureBit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.name {
            Some(name) => write!(f, "bit {} ({name:?})", self.bit),
            None => write!(f, "bit {}", self.bit),
        }
    }
}

/// What [`super::inspect`] found: the facts the report and the later checks need.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Qcow2Info {
    /// qcow2 version: 2 (QEMU's `compat=0.10`) or 3 (`compat=1.1`).
    pub version: u32,
    /// Guest disk size in bytes (what `min_disk` must cover).
    pub virtual_size: u64,
    /// Cluster size in bytes.
    pub cluster_size: u64,
    /// Size of the qcow2 file itself.
    pub file_size: u64,
    /// Encoding of compressed clusters.
    pub compression_type: CompressionType,
    /// Whether any guest cluster is stored compressed.
    pub compressed: bool,
    /// How the guest clusters are stored.
    pub clusters: ClusterCounts,
    /// Number of internal snapshots (kept, but not refused).
    pub snapshots: u32,
    /// 128-bit L2 entries with subclusters.
    pub extended_l2: bool,
    /// Lazy refcounts (compatible feature bit 0).
    pub lazy_refcounts: bool,
    /// Width of a refcount entry in bits.
    pub refcount_bits: u32,
}

/// How the guest clusters of an image are stored, counted over the whole virtual disk.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ClusterCounts {
    /// Clusters with data in the file (uncompressed).
    pub data: u64,
    /// Compressed clusters.
    pub compressed: u64,
    /// Clusters flagged to read as zeros.
    pub zero: u64,
    /// Clusters with no mapping (read as zeros, since there is no backing file).
    pub unallocated: u64,
}

/// A qcow2 image that cannot be read or must not be published, and which file it is.
#[derive(Debug)]
pub struct Error {
    path: PathBuf,
    kind: ErrorKind,
}

impl Error {
    pub(crate) fn new(path: &Path, kind: ErrorKind) -> Self {
        Error {
            path: path.to_path_buf(),
            kind,
        }
    }

    /// The image file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// What is wrong with it.
    pub fn kind(&self) -> &ErrorKind {
        &self.kind
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.kind)
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        // The kind is already part of this Display; its own cause (an io::Error, an inflate
        // error) is the next link.
        std::error::Error::source(&self.kind)
    }
}

/// Why a qcow2 image was refused or could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ErrorKind {
    /// The file could not be opened or read.
    #[error("cannot {what}")]
    Io {
        /// What was being done ("open the image", "read the L1 table", …).
        what: &'static str,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// No qcow2 magic.
    #[error(
        "is not a qcow2 image (no \"QFI\\xfb\" magic; it looks like {looks_like}); the image is \
         published as disk_format=qcow2 and Glance's format inspection refuses other bytes, so \
         build it with format = \"qcow2\""
    )]
    NotQcow2 {
        /// A guess at what the file is.
        looks_like: String,
    },
    /// Shorter than a header.
    #[error("is only {len} bytes long, shorter than a qcow2 header")]
    Truncated {
        /// File length.
        len: u64,
    },
    /// Version other than 2 or 3.
    #[error(
        "is qcow version {version}; only qcow2 versions 2 and 3 are supported{}",
        if *version == 1 { " (version 1 is the old qcow format that Glance and current QEMU no longer accept)" } else { " (an unknown version cannot be checked, and the compute nodes' QEMU may not open it)" }
    )]
    UnsupportedVersion {
        /// The header's version field.
        version: u32,
    },
    /// A header field that QEMU itself would not write.
    #[error("has an inconsistent qcow2 header: {reason}; the file is damaged or was not written by QEMU")]
    BadHeader {
        /// Which field and why.
        reason: String,
    },
    /// A backing file is set.
    #[error(
        "has a backing file {name:?}, which makes the image depend on a path of the build host \
         (Glance would store an image that boots only with that file beside it); flatten it \
         with `qemu-img convert -O qcow2 IN OUT`"
    )]
    BackingFile {
        /// The backing file name as stored in the image.
        name: String,
    },
    /// Incompatible bit 2: guest data lives in another file.
    #[error(
        "keeps its guest data in an external data file{}, outside the qcow2 file: uploading \
         this file alone would publish a disk without its data (Glance refuses such images \
         as a security risk); convert it with `qemu-img convert -O qcow2 IN OUT`",
        match name { Some(n) => format!(" ({n:?})"), None => String::new() }
    )]
    ExternalDataFile {
        /// The data file name from the header extension.
        name: Option<String>,
    },
    /// crypt_method is not 0.
    #[error(
        "is encrypted ({method}); Glance and Nova cannot boot it without the key, so publish \
         an unencrypted image"
    )]
    Encrypted {
        /// "AES" or "LUKS" (or the raw method number).
        method: String,
    },
    /// Incompatible bit 1.
    #[error(
        "is marked corrupt by QEMU (incompatible feature bit 1): its metadata is known to be \
         inconsistent, so its guest bytes cannot be trusted; rebuild the image"
    )]
    Corrupt,
    /// Incompatible bit 0.
    #[error(
        "was not closed cleanly (dirty bit set, lazy refcounts): its refcounts may be stale \
         and QEMU would have to repair it before use; run `qemu-img check -r all` or rebuild it"
    )]
    Dirty,
    /// Set incompatible bits this reader does not know.
    #[error(
        "uses incompatible qcow2 features this reader does not know: {}; their meaning \
         changes how the file must be read, so it cannot be checked (and older QEMU on the \
         compute nodes could not open it either)",
        list_bits(bits)
    )]
    UnknownFeatures {
        /// The unknown bits.
        bits: Vec<FeatureBit>,
    },
    /// zstd (or unknown) compressed clusters.
    #[error(
        "has {compression}-compressed clusters; this reader decodes only zlib (raw deflate) \
         clusters (zstd would need a C library), so the guest disk cannot be checked; \
         convert it with `qemu-img convert -O qcow2 -c -o compression_type=zlib IN OUT`"
    )]
    UnsupportedCompression {
        /// The compression type.
        compression: CompressionType,
    },
    /// A guest read past the virtual disk.
    #[error(
        "cannot read {len} guest bytes at offset {offset}: the virtual disk is only {size} bytes"
    )]
    OutOfRange {
        /// Guest offset.
        offset: u64,
        /// Bytes asked for.
        len: u64,
        /// Virtual size.
        size: u64,
    },
    /// An L1/L2 entry pointing somewhere impossible.
    #[error("has a broken cluster map: {reason}")]
    BadTable {
        /// What is wrong.
        reason: String,
    },
    /// A compressed cluster that does not inflate to a full cluster.
    #[error("compressed cluster at guest offset {guest_offset} does not inflate to a full cluster{}", detail.as_deref().map(|d| format!(" ({d})")).unwrap_or_default())]
    Inflate {
        /// Guest offset of the cluster.
        guest_offset: u64,
        /// What the decoder said.
        detail: Option<String>,
        /// The decoder's error.
        #[source]
        source: Option<flate2::DecompressError>,
    },
    /// A compressed cluster whose stream goes on after a full cluster.
    #[error(
        "compressed cluster at guest offset {guest_offset} inflates past its {cluster_size}-byte \
         cluster; QEMU writes streams that end exactly at the cluster and would silently drop \
         the rest, so the file was not written by QEMU and its guest bytes cannot be trusted"
    )]
    InflatesPastCluster {
        /// Guest offset of the cluster.
        guest_offset: u64,
        /// The cluster size.
        cluster_size: u64,
    },
}

fn list_bits(bits: &[FeatureBit]) -> String {
    bits.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

fn be32(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_be_bytes(a)
}

fn be64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_be_bytes(a)
}

fn bad(reason: impl Into<String>) -> ErrorKind {
    ErrorKind::BadHeader {
        reason: reason.into(),
    }
}

impl Header {
    /// Cluster size in bytes.
    pub fn cluster_size(&self) -> u64 {
        1 << self.cluster_bits
    }

    /// Whether L2 entries are 128 bits (subclusters).
    pub fn extended_l2(&self) -> bool {
        self.incompatible_features & incompatible::EXTENDED_L2 != 0
    }

    /// Parses the header from the start of the file (`bytes` holds at least the first
    /// cluster, or the whole file when it is shorter). Checks the structure only; whether the
    /// image may be published is [`Header::check_publishable`].
    pub fn parse(bytes: &[u8], file_size: u64) -> Result<Header, ErrorKind> {
        if bytes.len() < 4 || bytes[..4] != MAGIC {
            return Err(ErrorKind::NotQcow2 {
                looks_like: looks_like(bytes, file_size),
            });
        }
        if bytes.len() < 8 {
            return Err(ErrorKind::Truncated { len: file_size });
        }
        let version = be32(bytes, 4);
        if version != 2 && version != 3 {
            return Err(ErrorKind::UnsupportedVersion { version });
        }
        if bytes.len() < V2_HEADER_LEN as usize {
            return Err(ErrorKind::Truncated { len: file_size });
        }
        let cluster_bits = be32(bytes, 20);
        if !(9..=21).contains(&cluster_bits) {
            return Err(bad(format!(
                "cluster_bits is {cluster_bits}, outside 9..=21 (512 B to 2 MiB clusters)"
            )));
        }
        let cluster_size = 1u64 << cluster_bits;
        let mut h = Header {
            version,
            backing_file_offset: be64(bytes, 8),
            backing_file_size: be32(bytes, 16),
            cluster_bits,
            size: be64(bytes, 24),
            crypt_method: be32(bytes, 32),
            l1_size: be32(bytes, 36),
            l1_table_offset: be64(bytes, 40),
            refcount_table_offset: be64(bytes, 48),
            refcount_table_clusters: be32(bytes, 56),
            nb_snapshots: be32(bytes, 60),
            snapshots_offset: be64(bytes, 64),
            incompatible_features: 0,
            compatible_features: 0,
            autoclear_features: 0,
            refcount_order: 4,
            header_length: V2_HEADER_LEN,
            compression_type: CompressionType::Zlib,
            backing_file: None,
            backing_format: None,
            data_file: None,
            encryption_extension: false,
            feature_names: Vec::new(),
        };
        if version == 3 {
            if bytes.len() < V3_MIN_HEADER_LEN as usize {
                return Err(ErrorKind::Truncated { len: file_size });
            }
            h.incompatible_features = be64(bytes, 72);
            h.compatible_features = be64(bytes, 80);
            h.autoclear_features = be64(bytes, 88);
            h.refcount_order = be32(bytes, 96);
            h.header_length = be32(bytes, 100);
            if h.header_length < V3_MIN_HEADER_LEN || !h.header_length.is_multiple_of(8) {
                return Err(bad(format!(
                    "header_length is {}; version 3 needs at least {V3_MIN_HEADER_LEN} and a multiple of 8",
                    h.header_length
                )));
            }
            if u64::from(h.header_length) > cluster_size || h.header_length as usize > bytes.len() {
                return Err(bad(format!(
                    "header_length {} runs past the first cluster or the end of the file",
                    h.header_length
                )));
            }
            if h.refcount_order > 6 {
                return Err(bad(format!(
                    "refcount_order is {}, above the maximum 6 (64-bit refcounts)",
                    h.refcount_order
                )));
            }
            // Byte 104 exists only in headers longer than the 104-byte minimum.
            let raw_type = if h.header_length > V3_MIN_HEADER_LEN {
                bytes[104]
            } else {
                0
            };
            let flagged = h.incompatible_features & incompatible::COMPRESSION_TYPE != 0;
            h.compression_type = match raw_type {
                0 => CompressionType::Zlib,
                1 => CompressionType::Zstd,
                other => {
                    return Err(bad(format!(
                        "compression_type is {other}; only 0 (zlib) and 1 (zstd) exist"
                    )))
                }
            };
            // qcow2.txt: the bit must be set exactly when the type is not zlib.
            if flagged != (raw_type != 0) {
                return Err(bad(format!(
                    "incompatible bit 3 (compression type) is {} but compression_type is {}",
                    if flagged { "set" } else { "clear" },
                    h.compression_type
                )));
            }
        }
        parse_extensions(&mut h, bytes, cluster_size)?;
        if h.backing_file_offset != 0 {
            h.backing_file = Some(read_backing_name(&h, bytes));
        }
        check_l1_geometry(&h, file_size)?;
        Ok(h)
    }

    /// Refuses what must not be published, most fundamental first: a backing file, an external
    /// data file, encryption, a corrupt or dirty image, unknown incompatible features.
    pub fn check_publishable(&self) -> Result<(), ErrorKind> {
        if let Some(name) = &self.backing_file {
            return Err(ErrorKind::BackingFile { name: name.clone() });
        }
        if self.incompatible_features & incompatible::EXTERNAL_DATA_FILE != 0 {
            return Err(ErrorKind::ExternalDataFile {
                name: self.data_file.clone(),
            });
        }
        if self.crypt_method != 0 || self.encryption_extension {
            let method = match self.crypt_method {
                1 => "AES".to_string(),
                2 => "LUKS".to_string(),
                0 => "full-disk encryption header".to_string(),
                n => format!("crypt_method {n}"),
            };
            return Err(ErrorKind::Encrypted { method });
        }
        if self.incompatible_features & incompatible::CORRUPT != 0 {
            return Err(ErrorKind::Corrupt);
        }
        if self.incompatible_features & incompatible::DIRTY != 0 {
            return Err(ErrorKind::Dirty);
        }
        let unknown = self.incompatible_features & !incompatible::KNOWN;
        if unknown != 0 {
            let bits = (0u8..64)
                .filter(|b| unknown & (1u64 << b) != 0)
                .map(|bit| FeatureBit {
                    bit,
                    name: self
                        .feature_names
                        .iter()
                        .find(|(t, b, _)| *t == 0 && *b == bit)
                        .map(|(_, _, n)| n.clone()),
                })
                .collect();
            return Err(ErrorKind::UnknownFeatures { bits });
        }
        Ok(())
    }
}

fn parse_extensions(h: &mut Header, bytes: &[u8], cluster_size: u64) -> Result<(), ErrorKind> {
    // Extensions end at the first cluster boundary (or at the end of what we have).
    let limit = bytes
        .len()
        .min(usize::try_from(cluster_size).unwrap_or(usize::MAX));
    let mut at = h.header_length as usize;
    while at + 8 <= limit {
        let kind = be32(bytes, at);
        let len = be32(bytes, at + 4) as usize;
        if kind == EXT_END {
            return Ok(());
        }
        let start = at + 8;
        let end = start
            .checked_add(len)
            .filter(|&e| e <= limit)
            .ok_or_else(|| {
                bad(format!(
                    "header extension 0x{kind:08x} at byte {at} ({len} bytes) runs past the first cluster"
                ))
            })?;
        let data = &bytes[start..end];
        match kind {
            EXT_BACKING_FORMAT => h.backing_format = Some(lossy(data)),
            EXT_DATA_FILE => h.data_file = Some(lossy(data)),
            EXT_FULL_DISK_ENCRYPTION => h.encryption_extension = true,
            EXT_FEATURE_NAMES => {
                for entry in data.chunks_exact(48) {
                    let name = &entry[2..];
                    let name = &name[..name.iter().position(|&c| c == 0).unwrap_or(name.len())];
                    h.feature_names.push((entry[0], entry[1], lossy(name)));
                }
            }
            // Bitmaps and unknown extensions do not change how guest data is read.
            _ => {}
        }
        at = start + len.div_ceil(8) * 8;
    }
    Ok(())
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn read_backing_name(h: &Header, bytes: &[u8]) -> String {
    let start = usize::try_from(h.backing_file_offset).unwrap_or(usize::MAX);
    let len = h.backing_file_size.min(MAX_BACKING_FILE_NAME) as usize;
    match start.checked_add(len).and_then(|end| bytes.get(start..end)) {
        Some(name) if !name.is_empty() => lossy(name),
        _ => format!(
            "<name not readable: {} bytes at offset {}>",
            h.backing_file_size, h.backing_file_offset
        ),
    }
}

fn check_l1_geometry(h: &Header, file_size: u64) -> Result<(), ErrorKind> {
    let cluster_size = h.cluster_size();
    let entry_bytes: u64 = if h.extended_l2() { 16 } else { 8 };
    let per_l2 = cluster_size / entry_bytes;
    let guest_clusters = h.size.div_ceil(cluster_size);
    let needed = guest_clusters.div_ceil(per_l2);
    if u64::from(h.l1_size) < needed {
        return Err(bad(format!(
            "l1_size is {} but a {}-byte disk needs {needed} L1 entries",
            h.l1_size, h.size
        )));
    }
    let l1_bytes = u64::from(h.l1_size) * 8;
    if l1_bytes > MAX_L1_BYTES {
        return Err(bad(format!(
            "l1_size {} is above QEMU's limit of {} entries",
            h.l1_size,
            MAX_L1_BYTES / 8
        )));
    }
    if h.l1_size > 0 {
        if !h.l1_table_offset.is_multiple_of(cluster_size) {
            return Err(bad(format!(
                "l1_table_offset {} is not cluster-aligned",
                h.l1_table_offset
            )));
        }
        if h.l1_table_offset.saturating_add(l1_bytes) > file_size {
            return Err(bad(format!(
                "the L1 table ({l1_bytes} bytes at {}) runs past the end of the {file_size}-byte file",
                h.l1_table_offset
            )));
        }
    }
    // The other tables are not read here, but a header that places them outside the file
    // (or claims more of them than QEMU allows) describes no image QEMU wrote.
    let refcount_bytes = u64::from(h.refcount_table_clusters).saturating_mul(cluster_size);
    if !h.refcount_table_offset.is_multiple_of(cluster_size)
        || h.refcount_table_offset.saturating_add(refcount_bytes) > file_size
    {
        return Err(bad(format!(
            "the refcount table ({} cluster(s) at {}) is not a cluster-aligned part of the \
             {file_size}-byte file",
            h.refcount_table_clusters, h.refcount_table_offset
        )));
    }
    if h.nb_snapshots > MAX_SNAPSHOTS {
        return Err(bad(format!(
            "{} snapshots is above QEMU's limit of {MAX_SNAPSHOTS}",
            h.nb_snapshots
        )));
    }
    if h.nb_snapshots > 0 && h.snapshots_offset >= file_size {
        return Err(bad(format!(
            "the snapshot table at {} is past the end of the {file_size}-byte file",
            h.snapshots_offset
        )));
    }
    Ok(())
}

/// A short guess at what a non-qcow2 file is, from its first bytes.
fn looks_like(bytes: &[u8], file_size: u64) -> String {
    let at = |off: usize, sig: &[u8]| bytes.get(off..off + sig.len()) == Some(sig);
    if file_size == 0 {
        return "an empty file".into();
    }
    if at(0, b"QFI") {
        return "a qcow image with a damaged magic".into();
    }
    let raw_disk = |what: &str| format!("a raw disk image with {what}");
    if at(512, b"EFI PART") {
        return raw_disk("a GPT");
    }
    if at(4096, b"EFI PART") {
        return raw_disk("a GPT for 4096-byte sectors");
    }
    let simple: &[(usize, &[u8], &str)] = &[
        (0, b"KDMV", "a VMDK image"),
        (0, b"# Disk DescriptorFile", "a VMDK descriptor"),
        (0, b"conectix", "a VHD (vpc) image"),
        (0, b"vhdxfile", "a VHDX image"),
        (0x40, b"\x7f\x10\xda\xbe", "a VirtualBox VDI image"),
        (0, b"\x1f\x8b", "a gzip file"),
        (0, b"\xfd7zXZ\x00", "an xz file"),
        (0, b"\x28\xb5\x2f\xfd", "a zstd file"),
        (0, b"BZh", "a bzip2 file"),
        (0, b"LUKS\xba\xbe", "a LUKS volume"),
        (0, b"hsqs", "a squashfs image"),
        (257, b"ustar", "a tar archive"),
        (0x8001, b"CD001", "an ISO 9660 image"),
        (0x438, b"\x53\xef", "an ext2/3/4 file system"),
        (0, b"\x7fELF", "an ELF executable"),
    ];
    for (off, sig, what) in simple {
        if at(*off, sig) {
            return (*what).to_string();
        }
    }
    if at(510, b"\x55\xaa") {
        return raw_disk("an MBR boot signature");
    }
    let head = &bytes[..bytes.len().min(1 << 20)];
    if head.iter().all(|&b| b == 0) {
        return "zeros (a blank raw disk?)".into();
    }
    if head
        .iter()
        .take(512)
        .all(|&b| b.is_ascii_graphic() || b.is_ascii_whitespace())
    {
        return "a text file".into();
    }
    "unrecognised data (a raw disk without a partition table?)".into()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal version 3 header: 64 KiB clusters, 1 MiB disk, L1 at 0x30000 with one entry.
    fn v3() -> Vec<u8> {
        let mut b = vec![0u8; 0x40000];
        b[..4].copy_from_slice(&MAGIC);
        b[4..8].copy_from_slice(&3u32.to_be_bytes());
        b[20..24].copy_from_slice(&16u32.to_be_bytes());
        b[24..32].copy_from_slice(&(1u64 << 20).to_be_bytes());
        b[36..40].copy_from_slice(&1u32.to_be_bytes());
        b[40..48].copy_from_slice(&0x30000u64.to_be_bytes());
        b[96..100].copy_from_slice(&4u32.to_be_bytes());
        b[100..104].copy_from_slice(&112u32.to_be_bytes());
        b
    }

    fn parse(b: &[u8]) -> Result<Header, ErrorKind> {
        Header::parse(b, b.len() as u64)
    }

    #[test]
    fn parses_a_minimal_v3_header() {
        let h = parse(&v3()).unwrap();
        assert_eq!(h.version, 3);
        assert_eq!(h.cluster_size(), 65536);
        assert_eq!(h.size, 1 << 20);
        assert_eq!(h.compression_type, CompressionType::Zlib);
        h.check_publishable().unwrap();
    }

    #[test]
    fn describes_what_a_non_qcow2_file_looks_like() {
        let mut gpt = vec![0u8; 4096];
        gpt[510] = 0x55;
        gpt[511] = 0xaa;
        gpt[512..520].copy_from_slice(b"EFI PART");
        let msg = parse(&gpt).unwrap_err().to_string();
        assert!(msg.contains("a raw disk image with a GPT"), "{msg}");
        let msg = parse(&vec![0u8; 4096]).unwrap_err().to_string();
        assert!(msg.contains("zeros"), "{msg}");
        let mut mbr = vec![0u8; 4096];
        mbr[510] = 0x55;
        mbr[511] = 0xaa;
        let msg = parse(&mbr).unwrap_err().to_string();
        assert!(msg.contains("MBR boot signature"), "{msg}");
    }

    #[test]
    fn refuses_version_1_and_4() {
        let mut b = v3();
        b[4..8].copy_from_slice(&1u32.to_be_bytes());
        assert!(matches!(
            parse(&b),
            Err(ErrorKind::UnsupportedVersion { version: 1 })
        ));
        b[4..8].copy_from_slice(&4u32.to_be_bytes());
        assert!(matches!(
            parse(&b),
            Err(ErrorKind::UnsupportedVersion { version: 4 })
        ));
    }

    #[test]
    fn refuses_bad_cluster_bits() {
        let mut b = v3();
        b[20..24].copy_from_slice(&22u32.to_be_bytes());
        let msg = parse(&b).unwrap_err().to_string();
        assert!(msg.contains("cluster_bits is 22"), "{msg}");
    }

    #[test]
    fn names_the_backing_file() {
        let mut b = v3();
        b[8..16].copy_from_slice(&0x200u64.to_be_bytes());
        b[16..20].copy_from_slice(&9u32.to_be_bytes());
        b[0x200..0x209].copy_from_slice(b"base.img\0");
        let err = parse(&b).unwrap().check_publishable().unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("\"base.img\\0\"") || msg.contains("base.img"),
            "{msg}"
        );
        assert!(msg.contains("depend on a path of the build host"), "{msg}");
    }

    #[test]
    fn refuses_each_incompatible_problem() {
        let with = |bits: u64| {
            let mut b = v3();
            b[72..80].copy_from_slice(&bits.to_be_bytes());
            b
        };
        let check = |b: Vec<u8>| parse(&b).unwrap().check_publishable().unwrap_err();
        assert!(matches!(check(with(1)), ErrorKind::Dirty));
        assert!(matches!(check(with(2)), ErrorKind::Corrupt));
        assert!(matches!(
            check(with(4)),
            ErrorKind::ExternalDataFile { name: None }
        ));
        match check(with((1 << 5) | (1 << 40))) {
            ErrorKind::UnknownFeatures { bits } => {
                assert_eq!(bits.iter().map(|b| b.bit).collect::<Vec<_>>(), [5, 40]);
            }
            other => panic!("unexpected {other:?}"),
        }
        // Extended L2 is understood.
        parse(&with(1 << 4)).unwrap().check_publishable().unwrap();
    }

    #[test]
    fn names_unknown_bits_from_the_feature_name_table() {
        let mut b = v3();
        b[72..80].copy_from_slice(&(1u64 << 9).to_be_bytes());
        // Extension at 112: feature name table with one entry.
        b[112..116].copy_from_slice(&EXT_FEATURE_NAMES.to_be_bytes());
        b[116..120].copy_from_slice(&48u32.to_be_bytes());
        b[120] = 0;
        b[121] = 9;
        b[122..128].copy_from_slice(b"future");
        let msg = parse(&b)
            .unwrap()
            .check_publishable()
            .unwrap_err()
            .to_string();
        assert!(msg.contains("bit 9 (\"future\")"), "{msg}");
    }

    #[test]
    fn reads_encryption_and_zstd_fields() {
        let mut b = v3();
        b[32..36].copy_from_slice(&2u32.to_be_bytes());
        let msg = parse(&b)
            .unwrap()
            .check_publishable()
            .unwrap_err()
            .to_string();
        assert!(msg.contains("encrypted (LUKS)"), "{msg}");

        let mut b = v3();
        b[72..80].copy_from_slice(&incompatible::COMPRESSION_TYPE.to_be_bytes());
        b[104] = 1;
        assert_eq!(parse(&b).unwrap().compression_type, CompressionType::Zstd);
        b[104] = 0;
        assert!(matches!(parse(&b), Err(ErrorKind::BadHeader { .. })));
    }

    #[test]
    fn refuses_an_l1_table_too_small_for_the_disk() {
        let mut b = v3();
        // 1 TiB needs 2048 L1 entries with 64 KiB clusters.
        b[24..32].copy_from_slice(&(1u64 << 40).to_be_bytes());
        let msg = parse(&b).unwrap_err().to_string();
        assert!(msg.contains("needs 2048 L1 entries"), "{msg}");
    }
}
