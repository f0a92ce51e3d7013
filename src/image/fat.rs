//! A read-only FAT12/16/32 directory walker, just enough to prove that an EFI System Partition
//! holds a file such as `\EFI\BOOT\BOOTX64.EFI` without mounting anything.
//!
//! Names are matched against the 8.3 short-name entries, case-insensitively: every FAT file has
//! one, and the names firmware looks for (`EFI`, `BOOT`, `BOOTX64.EFI`) fit 8.3, so long-name
//! entries never need decoding. Layout and FAT-type rules follow Microsoft's "FAT32 File System
//! Specification" (fatgen103): the type is decided by the cluster count alone.

use crate::image::disk::Disk;
use std::io;

/// Directory entry attribute bits.
const ATTR_VOLUME_ID: u8 = 0x08;
const ATTR_DIRECTORY: u8 = 0x10;
const ATTR_LONG_NAME: u8 = 0x0F;
const DIR_ENTRY: usize = 32;
const MAX_DIR_BYTES: usize = 65536 * DIR_ENTRY;

/// The FAT variant, decided by the number of data clusters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FatType {
    /// Fewer than 4085 clusters.
    Fat12,
    /// Fewer than 65525 clusters.
    Fat16,
    /// The rest.
    Fat32,
}

/// A file or directory found by [`Fat::find`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Size in bytes (0 for directories).
    pub size: u32,
    /// First cluster (0 for an empty file).
    pub first_cluster: u32,
    /// Whether it is a directory.
    pub is_dir: bool,
}

/// The FAT file system could not be read, or is not one.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading the partition failed.
    #[error("cannot read the {what} of the FAT file system")]
    Read {
        /// What was being read.
        what: &'static str,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The boot sector is not a FAT boot sector.
    #[error("not a FAT file system: {reason}")]
    NotFat {
        /// What is wrong with the boot sector.
        reason: String,
    },
    /// The FAT or a directory is inconsistent.
    #[error("damaged FAT file system: {reason}")]
    Damaged {
        /// What is inconsistent.
        reason: String,
    },
}

/// A FAT volume on a [`Disk`] (usually a [`crate::image::partition::Slice`] of the ESP).
pub struct Fat<'a, D: Disk + ?Sized> {
    disk: &'a mut D,
    kind: FatType,
    bytes_per_sector: u64,
    cluster_bytes: u64,
    /// Byte offset of the first FAT.
    fat_offset: u64,
    /// FAT12/16: the fixed root directory region (offset, bytes).
    root_region: Option<(u64, u64)>,
    /// FAT32: the root directory's first cluster.
    root_cluster: u32,
    /// Byte offset of cluster 2.
    data_offset: u64,
    /// Number of data clusters (valid cluster numbers are 2..clusters + 2).
    clusters: u32,
}

fn le16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn not_fat(reason: impl Into<String>) -> Error {
    Error::NotFat {
        reason: reason.into(),
    }
}

fn damaged(reason: impl Into<String>) -> Error {
    Error::Damaged {
        reason: reason.into(),
    }
}

impl<'a, D: Disk + ?Sized> Fat<'a, D> {
    /// Reads and checks the boot sector (BIOS parameter block).
    pub fn open(disk: &'a mut D) -> Result<Self, Error> {
        if disk.size() < 512 {
            return Err(not_fat(format!(
                "the partition is only {} bytes",
                disk.size()
            )));
        }
        let mut bs = [0u8; 512];
        disk.read_exact_at(0, &mut bs)
            .map_err(|source| Error::Read {
                what: "boot sector",
                source,
            })?;
        if bs[510..512] != [0x55, 0xAA] {
            return Err(not_fat("no 0x55AA signature in the boot sector"));
        }
        let bps = le16(&bs, 11);
        let spc = bs[13];
        let reserved = le16(&bs, 14);
        let nfats = bs[16];
        let root_entries = le16(&bs, 17);
        let total16 = le16(&bs, 19);
        let fat16 = le16(&bs, 22);
        let total32 = le32(&bs, 32);
        let fat32 = le32(&bs, 36);
        if !matches!(bps, 512 | 1024 | 2048 | 4096) {
            return Err(not_fat(format!("{bps} bytes per sector")));
        }
        if spc == 0 || !spc.is_power_of_two() {
            return Err(not_fat(format!("{spc} sectors per cluster")));
        }
        if reserved == 0 || nfats == 0 {
            return Err(not_fat(format!(
                "{reserved} reserved sectors and {nfats} FATs"
            )));
        }
        let bps64 = u64::from(bps);
        let fat_sectors = if fat16 != 0 {
            u64::from(fat16)
        } else {
            u64::from(fat32)
        };
        let total = if total16 != 0 {
            u64::from(total16)
        } else {
            u64::from(total32)
        };
        if fat_sectors == 0 || total == 0 {
            return Err(not_fat("zero-sized FAT or volume"));
        }
        let root_sectors = (u64::from(root_entries) * DIR_ENTRY as u64).div_ceil(bps64);
        let meta = u64::from(reserved) + u64::from(nfats) * fat_sectors + root_sectors;
        let data_sectors = total.checked_sub(meta).ok_or_else(|| {
            not_fat(format!(
                "{meta} metadata sectors in a {total}-sector volume"
            ))
        })?;
        let clusters = data_sectors / u64::from(spc);
        let kind = if clusters < 4085 {
            FatType::Fat12
        } else if clusters < 65525 {
            FatType::Fat16
        } else {
            FatType::Fat32
        };
        if total * bps64 > disk.size() {
            return Err(damaged(format!(
                "the volume claims {} bytes, the partition has {}",
                total * bps64,
                disk.size()
            )));
        }
        let root_region = match kind {
            FatType::Fat32 => None,
            _ => {
                if root_entries == 0 {
                    return Err(damaged("FAT12/16 volume without root directory entries"));
                }
                let start = (u64::from(reserved) + u64::from(nfats) * fat_sectors) * bps64;
                Some((start, root_sectors * bps64))
            }
        };
        Ok(Fat {
            disk,
            kind,
            bytes_per_sector: bps64,
            cluster_bytes: u64::from(spc) * bps64,
            fat_offset: u64::from(reserved) * bps64,
            root_region,
            root_cluster: le32(&bs, 44),
            data_offset: meta * bps64,
            // At most 2^28 clusters on FAT32, so this fits.
            clusters: u32::try_from(clusters).unwrap_or(u32::MAX),
        })
    }

    /// The FAT variant.
    pub fn kind(&self) -> FatType {
        self.kind
    }

    /// The FAT entry of `cluster`: the next cluster, or `None` at the end of the chain.
    fn next_cluster(&mut self, cluster: u32) -> Result<Option<u32>, Error> {
        let (at, width) = match self.kind {
            FatType::Fat12 => (u64::from(cluster) + u64::from(cluster) / 2, 2),
            FatType::Fat16 => (u64::from(cluster) * 2, 2),
            FatType::Fat32 => (u64::from(cluster) * 4, 4),
        };
        let mut b = [0u8; 4];
        self.disk
            .read_exact_at(self.fat_offset + at, &mut b[..width])
            .map_err(|source| Error::Read {
                what: "FAT",
                source,
            })?;
        let (value, end, bad) = match self.kind {
            FatType::Fat12 => {
                let raw = u32::from(le16(&b, 0));
                let v = if cluster % 2 == 1 {
                    raw >> 4
                } else {
                    raw & 0xFFF
                };
                (v, 0xFF8, 0xFF7)
            }
            FatType::Fat16 => (u32::from(le16(&b, 0)), 0xFFF8, 0xFFF7),
            FatType::Fat32 => (le32(&b, 0) & 0x0FFF_FFFF, 0x0FFF_FFF8, 0x0FFF_FFF7),
        };
        if value >= end {
            return Ok(None);
        }
        if value == bad || value < 2 || value >= self.clusters + 2 {
            return Err(damaged(format!(
                "cluster {cluster} links to {value:#x}, not a data cluster"
            )));
        }
        Ok(Some(value))
    }

    /// Byte offset of a data cluster.
    fn cluster_offset(&self, cluster: u32) -> Result<u64, Error> {
        if cluster < 2 || cluster >= self.clusters + 2 {
            return Err(damaged(format!(
                "cluster {cluster} is outside the data area"
            )));
        }
        Ok(self.data_offset + u64::from(cluster - 2) * self.cluster_bytes)
    }

    /// The bytes of the directory starting at `cluster` (0 = the root directory).
    fn read_dir(&mut self, cluster: u32) -> Result<Vec<u8>, Error> {
        let read_err = |source| Error::Read {
            what: "directory",
            source,
        };
        if cluster == 0 {
            if let Some((offset, len)) = self.root_region {
                let mut buf = vec![0u8; usize::try_from(len).unwrap_or(0)];
                self.disk
                    .read_exact_at(offset, &mut buf)
                    .map_err(read_err)?;
                return Ok(buf);
            }
        }
        let start = if cluster == 0 {
            self.root_cluster
        } else {
            cluster
        };
        let mut out = Vec::new();
        let mut next = Some(start);
        while let Some(c) = next {
            // FAT allows at most 65536 entries per directory; a longer chain is a cycle in the
            // FAT, which would otherwise be followed for ever.
            if out.len() >= MAX_DIR_BYTES {
                return Err(damaged(format!(
                    "the directory chain from cluster {start} is longer than FAT allows (it loops)"
                )));
            }
            let offset = self.cluster_offset(c)?;
            let from = out.len();
            out.resize(from + self.cluster_bytes as usize, 0);
            self.disk
                .read_exact_at(offset, &mut out[from..])
                .map_err(read_err)?;
            next = self.next_cluster(c)?;
        }
        Ok(out)
    }

    /// Looks `name` up among the short-name entries of a directory's bytes.
    fn lookup(dir: &[u8], name: &str) -> Option<Entry> {
        let wanted = short_name(name)?;
        for e in dir.chunks_exact(DIR_ENTRY) {
            match e[0] {
                0x00 => break,
                0xE5 => continue,
                _ => {}
            }
            let attr = e[11];
            if attr & ATTR_LONG_NAME == ATTR_LONG_NAME || attr & ATTR_VOLUME_ID != 0 {
                continue;
            }
            let mut have = [0u8; 11];
            have.copy_from_slice(&e[..11]);
            // 0x05 stands for a leading 0xE5 byte (fatgen103, DIR_Name).
            if have[0] == 0x05 {
                have[0] = 0xE5;
            }
            if have.eq_ignore_ascii_case(&wanted) {
                let first_cluster = (u32::from(le16(e, 20)) << 16) | u32::from(le16(e, 26));
                return Some(Entry {
                    size: le32(e, 28),
                    first_cluster,
                    is_dir: attr & ATTR_DIRECTORY != 0,
                });
            }
        }
        None
    }

    /// Finds `path` (components separated by `/` or `\`, e.g. `EFI/BOOT/BOOTX64.EFI`);
    /// `Ok(None)` when some component does not exist or a middle one is not a directory.
    pub fn find(&mut self, path: &str) -> Result<Option<Entry>, Error> {
        let mut dir_cluster = 0u32;
        let parts: Vec<&str> = path.split(['/', '\\']).filter(|p| !p.is_empty()).collect();
        let mut found = None;
        for (i, part) in parts.iter().enumerate() {
            let dir = self.read_dir(dir_cluster)?;
            let Some(entry) = Self::lookup(&dir, part) else {
                return Ok(None);
            };
            if i + 1 < parts.len() {
                if !entry.is_dir {
                    return Ok(None);
                }
                // ".." of a first-level directory points at cluster 0, the root: fine here.
                dir_cluster = entry.first_cluster;
            }
            found = Some(entry);
        }
        Ok(found)
    }

    /// The first `n` bytes of a file (fewer when the file is smaller).
    pub fn read_head(&mut self, entry: &Entry, n: usize) -> Result<Vec<u8>, Error> {
        let want = n.min(entry.size as usize);
        if want == 0 {
            return Ok(Vec::new());
        }
        let mut out = Vec::with_capacity(want);
        let mut next = Some(entry.first_cluster);
        let mut hops = 0u32;
        while let Some(c) = next {
            if out.len() >= want {
                break;
            }
            hops += 1;
            if hops > self.clusters {
                return Err(damaged(format!(
                    "the cluster chain from {} loops",
                    entry.first_cluster
                )));
            }
            let offset = self.cluster_offset(c)?;
            let take = (want - out.len()).min(self.cluster_bytes as usize);
            let from = out.len();
            out.resize(from + take, 0);
            self.disk
                .read_exact_at(offset, &mut out[from..])
                .map_err(|source| Error::Read {
                    what: "file data",
                    source,
                })?;
            next = self.next_cluster(c)?;
        }
        if out.len() < want {
            return Err(damaged(format!(
                "the file's cluster chain ends after {} of {} bytes",
                out.len(),
                entry.size
            )));
        }
        Ok(out)
    }

    /// Bytes per sector of the volume.
    pub fn bytes_per_sector(&self) -> u64 {
        self.bytes_per_sector
    }
}

/// `NAME.EXT` as the 11-byte space-padded 8.3 form; `None` when it does not fit 8.3 (such a
/// name can only be found through long-name entries, which this reader does not decode).
fn short_name(name: &str) -> Option<[u8; 11]> {
    let (base, ext) = match name.rsplit_once('.') {
        Some((b, e)) => (b, e),
        None => (name, ""),
    };
    if base.is_empty() || base.len() > 8 || ext.len() > 3 || !name.is_ascii() {
        return None;
    }
    let mut out = [b' '; 11];
    out[..base.len()].copy_from_slice(base.as_bytes());
    out[8..8 + ext.len()].copy_from_slice(ext.as_bytes());
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::disk::MemDisk;
    use std::path::Path;
    use std::process::Command;

    /// A FAT volume made by mtools (`mformat`, `mmd`, `mcopy`), the tools the fixtures use.
    /// Panics (failing the test) with the command when mtools is missing or fails.
    fn mtools_volume(dir: &Path, sectors: u32, fat_bits: &str) -> MemDisk {
        let img = dir.join(format!("fat{fat_bits}.img"));
        let file = std::fs::File::create(&img).unwrap();
        file.set_len(u64::from(sectors) * 512).unwrap();
        drop(file);
        let target = img.to_string_lossy().into_owned();
        let payload = dir.join("BOOTX64.EFI");
        let mut bytes = b"MZ".to_vec();
        bytes.extend((0..9000u32).map(|i| (i % 251) as u8));
        std::fs::write(&payload, &bytes).unwrap();
        let other = dir.join("a-long-file-name.txt");
        std::fs::write(&other, b"hello").unwrap();
        let steps: Vec<Vec<String>> = vec![
            vec![
                "mformat".into(),
                "-i".into(),
                target.clone(),
                "-F".into(),
                "-v".into(),
                "ESP".into(),
                "::".into(),
            ],
            vec![
                "mmd".into(),
                "-i".into(),
                target.clone(),
                "::/efi".into(),
                "::/efi/boot".into(),
            ],
            vec![
                "mcopy".into(),
                "-i".into(),
                target.clone(),
                other.to_string_lossy().into_owned(),
                "::/efi/".into(),
            ],
            vec![
                "mcopy".into(),
                "-i".into(),
                target.clone(),
                payload.to_string_lossy().into_owned(),
                "::/efi/boot/bootx64.efi".into(),
            ],
        ];
        for mut argv in steps {
            // -F (FAT32) only when asked; FAT12/16 follow from the size.
            if fat_bits != "32" {
                argv.retain(|a| a != "-F");
            }
            let out = Command::new(&argv[0])
                .args(&argv[1..])
                .env("MTOOLS_SKIP_CHECK", "1")
                .output()
                .unwrap_or_else(|e| {
                    panic!("{argv:?}: {e} (mtools is installed by make install-nix)")
                });
            assert!(out.status.success(), "{argv:?}: {out:?}");
        }
        MemDisk(std::fs::read(&img).unwrap())
    }

    fn check(sectors: u32, fat_bits: &str, kind: FatType) {
        let dir = tempfile::tempdir().unwrap();
        let mut disk = mtools_volume(dir.path(), sectors, fat_bits);
        let mut fat = Fat::open(&mut disk).unwrap();
        assert_eq!(fat.kind(), kind);
        let e = fat
            .find("\\EFI\\BOOT\\BOOTX64.EFI")
            .unwrap()
            .expect("found");
        assert!(!e.is_dir);
        assert_eq!(e.size, 9002);
        assert_eq!(fat.read_head(&e, 2).unwrap(), b"MZ");
        let all = fat.read_head(&e, 1 << 20).unwrap();
        assert_eq!(all.len(), 9002);
        assert_eq!(all[9001], (8999 % 251) as u8);
        assert!(fat.find("EFI/BOOT").unwrap().expect("dir").is_dir);
        assert!(fat.find("efi/boot/missing.efi").unwrap().is_none());
        assert!(fat.find("EFI/BOOT/BOOTX64.EFI/x").unwrap().is_none());
        // Only reachable through its long name; 8.3 lookups do not find it.
        assert!(fat.find("EFI/a-long-file-name.txt").unwrap().is_none());
    }

    #[test]
    fn finds_the_fallback_loader_on_fat12() {
        check(16384, "12", FatType::Fat12);
    }

    #[test]
    fn finds_the_fallback_loader_on_fat16() {
        check(65536, "16", FatType::Fat16);
    }

    #[test]
    fn finds_the_fallback_loader_on_fat32() {
        check(140_000, "32", FatType::Fat32);
    }

    #[test]
    fn refuses_what_is_not_fat() {
        let mut zeros = MemDisk(vec![0; 4096]);
        let err = Fat::open(&mut zeros).err().expect("not FAT");
        assert!(err.to_string().contains("0x55AA"), "{err}");
        let mut tiny = MemDisk(vec![0; 100]);
        assert!(matches!(Fat::open(&mut tiny), Err(Error::NotFat { .. })));
    }

    #[test]
    fn a_looping_chain_is_damage_not_a_hang() {
        let dir = tempfile::tempdir().unwrap();
        let mut disk = mtools_volume(dir.path(), 65536, "16");
        let (root, fat_at, spc) = {
            let fat = Fat::open(&mut disk).unwrap();
            (fat.root_region.unwrap(), fat.fat_offset, fat.cluster_bytes)
        };
        // Find EFI's directory cluster in the root, then make it point at itself.
        let root_bytes = &disk.0[root.0 as usize..(root.0 + root.1) as usize];
        let efi = Fat::<MemDisk>::lookup(root_bytes, "EFI").unwrap();
        let c = efi.first_cluster as usize;
        disk.0[fat_at as usize + 2 * c..fat_at as usize + 2 * c + 2]
            .copy_from_slice(&(c as u16).to_le_bytes());
        assert!(spc > 0);
        let mut fat = Fat::open(&mut disk).unwrap();
        let err = fat.find("EFI/BOOT/BOOTX64.EFI").unwrap_err();
        assert!(err.to_string().contains("loops"), "{err}");
    }

    #[test]
    fn short_names() {
        assert_eq!(short_name("BOOTX64.EFI").unwrap(), *b"BOOTX64 EFI");
        assert_eq!(short_name("EFI").unwrap(), *b"EFI        ");
        assert!(short_name("toolongname.efi").is_none());
        assert!(short_name(".efi").is_none());
    }
}
