//! Reads guest bytes out of a qcow2 file at any offset, through its L1/L2 cluster map.
//!
//! Unallocated and zero-flagged clusters read as zeros (there is never a backing file: such
//! images are refused when opened); compressed clusters are raw deflate, inflated one cluster
//! at a time, and a stream that goes on past its cluster is refused; extended L2 entries
//! (subclusters) are honoured. Guest data placed over the image's own metadata (the header,
//! the L1, refcount or an L2 table) is refused, as QEMU refuses to write it there. Reads use
//! `pread`, so the reader holds only the L1 table (and the sorted offsets of the L2 tables it
//! names), a few L2 tables and one inflated cluster.

use super::header::{ClusterCounts, CompressionType, Error, ErrorKind, Header};
use crate::image::disk::Disk;
use std::collections::VecDeque;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// The header is always in the first cluster, and clusters are at most 2 MiB.
const HEADER_READ: u64 = 2 << 20;
/// L2 tables kept in memory (at most 2 MiB each; usually 64 KiB).
const L2_CACHE_TABLES: usize = 16;
/// Bits 9..=55 of L1 and standard L2 entries hold a host offset.
const OFFSET_MASK: u64 = 0x00ff_ffff_ffff_fe00;
const L2_COMPRESSED: u64 = 1 << 62;
/// "COPIED": the cluster's refcount is exactly one, so it has a real host offset.
const L2_COPIED: u64 = 1 << 63;
const L2_ZERO: u64 = 1;
/// How much a compressed stream may still produce once its cluster is full before it is
/// refused: any byte at all proves the stream is not QEMU's, and a few are enough to tell.
const INFLATE_SLACK: usize = 64;

/// Where one guest cluster's bytes come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mapping {
    /// No L1/L2 entry: reads as zeros.
    Unallocated,
    /// Zero flag set: reads as zeros.
    Zero,
    /// Data at this host offset (cluster-aligned).
    Data(u64),
    /// Extended L2: per-subcluster allocation and zero bitmaps.
    Subclusters { host: u64, alloc: u32, zero: u32 },
    /// Deflated data of `len` bytes at `host`.
    Compressed { host: u64, len: u64 },
}

/// A qcow2 image opened for reading its guest disk.
#[derive(Debug)]
pub struct GuestReader {
    path: PathBuf,
    file: File,
    file_size: u64,
    header: Header,
    l1: Vec<u64>,
    /// Host offsets of the L2 tables the L1 table names, sorted: guest data stored there
    /// would alias the cluster map.
    l2_tables: Vec<u64>,
    /// (host offset of the table, its raw 64-bit words), most recently used last.
    l2_cache: VecDeque<(u64, Vec<u64>)>,
    /// The last inflated cluster: (guest cluster index, bytes).
    inflated: Option<(u64, Vec<u8>)>,
}

impl GuestReader {
    /// Opens `path`, parses its header and refuses images that must not be published (see
    /// [`Header::check_publishable`]): their guest bytes cannot be read from this file alone.
    pub fn open(path: &Path) -> Result<GuestReader, Error> {
        let fail = |kind| Error::new(path, kind);
        let io_fail = |what, source| fail(ErrorKind::Io { what, source });
        let file = File::open(path).map_err(|e| io_fail("open the image", e))?;
        let file_size = file
            .metadata()
            .map_err(|e| io_fail("read the image's metadata", e))?
            .len();
        let head_len = usize::try_from(file_size.min(HEADER_READ)).unwrap_or(0);
        let mut head = vec![0u8; head_len];
        file.read_exact_at(&mut head, 0)
            .map_err(|e| io_fail("read the qcow2 header", e))?;
        let header = Header::parse(&head, file_size).map_err(fail)?;
        header.check_publishable().map_err(fail)?;

        let mut raw = vec![0u8; header.l1_size as usize * 8];
        file.read_exact_at(&mut raw, header.l1_table_offset)
            .map_err(|e| io_fail("read the L1 table", e))?;
        let l1 = raw
            .chunks_exact(8)
            .map(|c| u64::from_be_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
            .collect::<Vec<u64>>();
        let mut l2_tables: Vec<u64> = l1
            .iter()
            .map(|e| e & OFFSET_MASK)
            .filter(|&h| h != 0)
            .collect();
        l2_tables.sort_unstable();
        l2_tables.dedup();
        Ok(GuestReader {
            path: path.to_path_buf(),
            file,
            file_size,
            header,
            l1,
            l2_tables,
            l2_cache: VecDeque::new(),
            inflated: None,
        })
    }

    /// The parsed header.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// The image file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Size of the qcow2 file itself.
    pub fn file_size(&self) -> u64 {
        self.file_size
    }

    /// Size of the guest disk.
    pub fn virtual_size(&self) -> u64 {
        self.header.size
    }

    fn err(&self, kind: ErrorKind) -> Error {
        Error::new(&self.path, kind)
    }

    fn bad_table(&self, reason: String) -> Error {
        self.err(ErrorKind::BadTable { reason })
    }

    fn cluster_size(&self) -> u64 {
        self.header.cluster_size()
    }

    /// 64-bit words per L2 entry.
    fn entry_words(&self) -> u64 {
        if self.header.extended_l2() {
            2
        } else {
            1
        }
    }

    fn l2_entries(&self) -> u64 {
        self.cluster_size() / (8 * self.entry_words())
    }

    /// Which of the metadata the header locates (the header's cluster, the L1 table, the
    /// refcount table) overlaps the `len` host bytes at `host`.
    fn header_metadata_at(&self, host: u64, len: u64) -> Option<&'static str> {
        let h = &self.header;
        let cs = self.cluster_size();
        let regions = [
            ("the header", 0, cs),
            (
                "the L1 table",
                h.l1_table_offset,
                u64::from(h.l1_size).saturating_mul(8),
            ),
            (
                "the refcount table",
                h.refcount_table_offset,
                u64::from(h.refcount_table_clusters).saturating_mul(cs),
            ),
        ];
        let end = host.saturating_add(len);
        regions
            .iter()
            .find(|(_, start, n)| host < start.saturating_add(*n) && *start < end)
            .map(|(what, ..)| *what)
    }

    /// Which metadata overlaps the `len` host bytes at `host`: what
    /// [`Self::header_metadata_at`] finds, or an L2 table. QEMU refuses to write guest data
    /// over its metadata (its overlap check); data found there was placed by hand, and reading
    /// it would hand the cluster map out as disk contents.
    fn metadata_at(&self, host: u64, len: u64) -> Option<String> {
        if let Some(what) = self.header_metadata_at(host, len) {
            return Some(what.to_owned());
        }
        let cs = self.cluster_size();
        let end = host.saturating_add(len);
        // The first table that ends after `host`; tables are one cluster long.
        let i = self
            .l2_tables
            .partition_point(|&t| t.saturating_add(cs) <= host);
        self.l2_tables
            .get(i)
            .filter(|&&t| t < end)
            .map(|t| format!("the L2 table at host offset {t}"))
    }

    /// Reads (or finds in the cache) the L2 table at `host`, returning its index in the cache.
    fn l2_table(&mut self, host: u64, l1_index: u64) -> Result<usize, Error> {
        if let Some(i) = self.l2_cache.iter().position(|(h, _)| *h == host) {
            return Ok(i);
        }
        let cs = self.cluster_size();
        if !host.is_multiple_of(cs) || host.saturating_add(cs) > self.file_size {
            return Err(self.bad_table(format!(
                "L1 entry {l1_index} points at an L2 table at host offset {host}, which is {}",
                if !host.is_multiple_of(cs) {
                    "not cluster-aligned"
                } else {
                    "past the end of the file"
                }
            )));
        }
        // An L2 table inside the image's own metadata is a crafted loop, not a disk.
        if let Some(what) = self.header_metadata_at(host, cs) {
            return Err(self.bad_table(format!(
                "L1 entry {l1_index} points at an L2 table at host offset {host}, inside {what}"
            )));
        }
        let mut raw = vec![0u8; cs as usize];
        self.file.read_exact_at(&mut raw, host).map_err(|source| {
            self.err(ErrorKind::Io {
                what: "read an L2 table",
                source,
            })
        })?;
        let words = raw
            .chunks_exact(8)
            .map(|c| u64::from_be_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
            .collect();
        if self.l2_cache.len() >= L2_CACHE_TABLES {
            self.l2_cache.pop_front();
        }
        self.l2_cache.push_back((host, words));
        Ok(self.l2_cache.len() - 1)
    }

    /// Where guest cluster `cluster` is stored.
    fn map(&mut self, cluster: u64) -> Result<Mapping, Error> {
        let per_table = self.l2_entries();
        let l1_index = cluster / per_table;
        let l2_index = cluster % per_table;
        let l1_entry = match usize::try_from(l1_index).ok().and_then(|i| self.l1.get(i)) {
            Some(&e) => e,
            None => return Ok(Mapping::Unallocated),
        };
        let table_host = l1_entry & OFFSET_MASK;
        if table_host == 0 {
            return Ok(Mapping::Unallocated);
        }
        let slot = self.l2_table(table_host, l1_index)?;
        let words = self.entry_words();
        let (entry, bitmap) = {
            let table = &self.l2_cache[slot].1;
            let at = (l2_index * words) as usize;
            (table[at], if words == 2 { table[at + 1] } else { 0 })
        };
        let cs = self.cluster_size();
        if entry & L2_COMPRESSED != 0 {
            if self.header.compression_type != CompressionType::Zlib {
                return Err(self.err(ErrorKind::UnsupportedCompression {
                    compression: self.header.compression_type,
                }));
            }
            // qcow2.txt "Compressed Clusters Descriptor": the offset takes the low
            // 62 - (cluster_bits - 8) bits, the count of additional 512-byte sectors the rest.
            let x = entry & (L2_COMPRESSED - 1);
            let offset_bits = 62 - (self.header.cluster_bits - 8);
            let host = x & ((1u64 << offset_bits) - 1);
            let sectors = (x >> offset_bits) + 1;
            let len = (sectors * 512).saturating_sub(host & 511);
            if host >= self.file_size {
                return Err(self.bad_table(format!(
                    "compressed guest cluster {cluster} points at host offset {host}, past the end of the file"
                )));
            }
            // Only where the stream starts: its sector count may run past its last byte (the
            // spec allows the tail of the final sector to belong to someone else).
            if let Some(what) = self.metadata_at(host, 1) {
                return Err(self.bad_table(format!(
                    "compressed guest cluster {cluster} points at host offset {host}, inside {what}"
                )));
            }
            return Ok(Mapping::Compressed { host, len });
        }
        let host = entry & OFFSET_MASK;
        if !host.is_multiple_of(cs) {
            return Err(self.bad_table(format!(
                "guest cluster {cluster} points at host offset {host}, which is not cluster-aligned"
            )));
        }
        if host != 0 && host >= self.file_size {
            return Err(self.bad_table(format!(
                "guest cluster {cluster} points at host offset {host}, past the end of the {}-byte file",
                self.file_size
            )));
        }
        if host != 0 {
            if let Some(what) = self.metadata_at(host, cs) {
                return Err(self.bad_table(format!(
                    "guest cluster {cluster} points at host offset {host}, inside {what}"
                )));
            }
        }
        if words == 2 {
            // Extended L2: low 32 bits "allocated", high 32 bits "reads as zeros".
            let alloc = bitmap as u32;
            let zero = (bitmap >> 32) as u32;
            if alloc & zero != 0 {
                return Err(self.bad_table(format!(
                    "guest cluster {cluster} has subclusters both allocated and zero (bitmap {bitmap:#018x})"
                )));
            }
            if alloc != 0 && host == 0 {
                return Err(self.bad_table(format!(
                    "guest cluster {cluster} has allocated subclusters but no host offset"
                )));
            }
            return Ok(if alloc == 0 {
                if zero == 0 {
                    Mapping::Unallocated
                } else {
                    Mapping::Zero
                }
            } else {
                Mapping::Subclusters { host, alloc, zero }
            });
        }
        // Bit 0 is the zero flag only in version 3; version 2 leaves it reserved.
        if self.header.version >= 3 && entry & L2_ZERO != 0 {
            return Ok(Mapping::Zero);
        }
        Ok(if host == 0 {
            // Offset 0 means "unallocated" to QEMU; COPIED claims a real cluster there, and
            // without an external data file (refused at open) that cluster is the header.
            if entry & L2_COPIED != 0 {
                return Err(self.bad_table(format!(
                    "guest cluster {cluster} is marked allocated at host offset 0, the header"
                )));
            }
            Mapping::Unallocated
        } else {
            Mapping::Data(host)
        })
    }

    fn read_host(&self, host: u64, buf: &mut [u8]) -> Result<(), Error> {
        self.file.read_exact_at(buf, host).map_err(|source| {
            if source.kind() == io::ErrorKind::UnexpectedEof {
                self.bad_table(format!(
                    "data at host offset {host} ({} bytes) runs past the end of the {}-byte file",
                    buf.len(),
                    self.file_size
                ))
            } else {
                self.err(ErrorKind::Io {
                    what: "read guest data",
                    source,
                })
            }
        })
    }

    /// Inflates guest cluster `cluster` (cached: reading a cluster piecewise inflates it once).
    fn inflate(&mut self, cluster: u64, host: u64, len: u64) -> Result<&[u8], Error> {
        if self.inflated.as_ref().map(|(c, _)| *c) != Some(cluster) {
            let cs = self.cluster_size() as usize;
            // The last compressed cluster may end before its last sector does.
            let len = len.min(self.file_size - host) as usize;
            let mut input = vec![0u8; len];
            self.read_host(host, &mut input)?;
            let mut out = vec![0u8; cs];
            // QEMU writes raw deflate (no zlib header, window bits 12) that ends exactly at
            // the end of the cluster; it stops reading once the cluster is full.
            let mut inflater = flate2::Decompress::new(false);
            let guest_offset = cluster * self.cluster_size();
            let inflate_err = |e| {
                self.err(ErrorKind::Inflate {
                    guest_offset,
                    detail: None,
                    source: Some(e),
                })
            };
            // Not `Finish`: it promises the buffer holds the whole output, and miniz_oxide then
            // inflates in one pass that cannot be resumed; the check below resumes it.
            let status = inflater
                .decompress(&input, &mut out, flate2::FlushDecompress::None)
                .map_err(inflate_err)?;
            if inflater.total_out() != cs as u64 {
                return Err(self.err(ErrorKind::Inflate {
                    guest_offset,
                    detail: Some(format!(
                        "{} of {cs} bytes, decoder status {status:?}",
                        inflater.total_out()
                    )),
                    source: None,
                }));
            }
            if status != flate2::Status::StreamEnd {
                // A full cluster but no end yet: either only the end-of-stream code is left
                // (QEMU's case) or more data follows, which QEMU would silently drop. A few
                // bytes of room tell the two apart without inflating the rest.
                let mut slack = [0u8; INFLATE_SLACK];
                let consumed = usize::try_from(inflater.total_in())
                    .unwrap_or(input.len())
                    .min(input.len());
                inflater
                    .decompress(
                        &input[consumed..],
                        &mut slack,
                        flate2::FlushDecompress::None,
                    )
                    .map_err(inflate_err)?;
                if inflater.total_out() > cs as u64 {
                    return Err(self.err(ErrorKind::InflatesPastCluster {
                        guest_offset,
                        cluster_size: cs as u64,
                    }));
                }
            }
            self.inflated = Some((cluster, out));
        }
        match &self.inflated {
            Some((_, bytes)) => Ok(bytes),
            None => Ok(&[]),
        }
    }

    /// Fills `buf` with the guest bytes at `offset`.
    pub fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), Error> {
        let size = self.header.size;
        let len = buf.len() as u64;
        if offset.checked_add(len).is_none_or(|end| end > size) {
            return Err(self.err(ErrorKind::OutOfRange { offset, len, size }));
        }
        let cs = self.cluster_size();
        let mut done = 0usize;
        while done < buf.len() {
            let pos = offset + done as u64;
            let cluster = pos / cs;
            let within = pos % cs;
            let n = (cs - within).min((buf.len() - done) as u64) as usize;
            let out = &mut buf[done..done + n];
            match self.map(cluster)? {
                Mapping::Unallocated | Mapping::Zero => out.fill(0),
                Mapping::Data(host) => self.read_host(host + within, out)?,
                Mapping::Compressed { host, len } => {
                    let bytes = self.inflate(cluster, host, len)?;
                    let w = within as usize;
                    out.copy_from_slice(&bytes[w..w + n]);
                }
                Mapping::Subclusters { host, alloc, zero } => {
                    let sub = cs / 32;
                    let mut i = 0usize;
                    while i < n {
                        let w = within + i as u64;
                        let bit = 1u32 << (w / sub);
                        let m = ((sub - w % sub) as usize).min(n - i);
                        if alloc & bit != 0 && zero & bit == 0 {
                            self.read_host(host + w, &mut out[i..i + m])?;
                        } else {
                            out[i..i + m].fill(0);
                        }
                        i += m;
                    }
                }
            }
            done += n;
        }
        Ok(())
    }

    /// Reads `len` guest bytes at `offset` into a new buffer.
    pub fn read_vec(&mut self, offset: u64, len: usize) -> Result<Vec<u8>, Error> {
        let mut buf = vec![0u8; len];
        self.read_at(offset, &mut buf)?;
        Ok(buf)
    }

    /// Walks every L2 table once and counts how the guest clusters are stored; a pointer
    /// outside the file is an error here rather than in the middle of a later read.
    pub fn scan(&mut self) -> Result<ClusterCounts, Error> {
        let clusters = self.header.size.div_ceil(self.cluster_size());
        let per_table = self.l2_entries();
        let mut counts = ClusterCounts::default();
        let mut cluster = 0;
        while cluster < clusters {
            // Skip a whole table's worth of clusters when its L1 entry is empty.
            let l1_index = usize::try_from(cluster / per_table).unwrap_or(usize::MAX);
            if self.l1.get(l1_index).is_none_or(|e| e & OFFSET_MASK == 0) {
                let next = ((cluster / per_table) + 1) * per_table;
                counts.unallocated += next.min(clusters) - cluster;
                cluster = next;
                continue;
            }
            match self.map(cluster)? {
                Mapping::Unallocated => counts.unallocated += 1,
                Mapping::Zero => counts.zero += 1,
                Mapping::Data(_) | Mapping::Subclusters { .. } => counts.data += 1,
                Mapping::Compressed { .. } => counts.compressed += 1,
            }
            cluster += 1;
        }
        Ok(counts)
    }
}

impl Disk for GuestReader {
    fn size(&self) -> u64 {
        self.virtual_size()
    }

    fn read_exact_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        self.read_at(offset, buf).map_err(|e| {
            let kind = match e.kind() {
                ErrorKind::OutOfRange { .. } => io::ErrorKind::UnexpectedEof,
                ErrorKind::Io { source, .. } => source.kind(),
                _ => io::ErrorKind::InvalidData,
            };
            io::Error::new(kind, e)
        })
    }
}
