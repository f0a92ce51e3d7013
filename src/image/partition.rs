//! The partition table inside a guest disk (MBR and GPT) and whether it fits the firmware the
//! image will be tagged with.
//!
//! Why it matters (measured in the boot lab): a GPT disk on SeaBIOS hangs silently, because its
//! protective MBR carries 0x55AA but no boot code; an MBR disk on OVMF drops to the UEFI shell.
//! Both are caught here, statically, before anything is booted or published.

use crate::firmware::Boot;
use crate::image::disk::Disk;
use serde::{Serialize, Serializer};
use std::fmt;
use std::io;

/// EFI System Partition type.
pub const ESP_TYPE: Guid = Guid::from_fields(
    0xC12A_7328,
    0xF81F,
    0x11D2,
    [0xBA, 0x4B, 0x00, 0xA0, 0xC9, 0x3E, 0xC9, 0x3B],
);
/// BIOS boot partition type (GRUB's core.img on a GPT disk booted by legacy BIOS).
pub const BIOS_BOOT_TYPE: Guid = Guid::from_fields(
    0x2168_6148,
    0x6449,
    0x6E6F,
    [0x74, 0x4E, 0x65, 0x65, 0x64, 0x45, 0x46, 0x49],
);
/// MBR partition type of a GPT disk's protective entry.
pub const MBR_PROTECTIVE: u8 = 0xEE;

/// GPT arrays hold 128 entries in practice; more than this is a damaged header.
const MAX_GPT_ENTRIES: u32 = 4096;
const GPT_SIGNATURE: &[u8; 8] = b"EFI PART";

/// A GUID as stored on disk (the first three fields little-endian, the rest as bytes).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Guid(pub [u8; 16]);

impl Guid {
    /// Builds the on-disk bytes from the textual fields (`d1-d2-d3-d4[0..2]-d4[2..]`).
    pub const fn from_fields(d1: u32, d2: u16, d3: u16, d4: [u8; 8]) -> Guid {
        let a = d1.to_le_bytes();
        let b = d2.to_le_bytes();
        let c = d3.to_le_bytes();
        Guid([
            a[0], a[1], a[2], a[3], b[0], b[1], c[0], c[1], d4[0], d4[1], d4[2], d4[3], d4[4],
            d4[5], d4[6], d4[7],
        ])
    }

    fn from_slice(b: &[u8]) -> Guid {
        let mut g = [0u8; 16];
        g.copy_from_slice(&b[..16]);
        Guid(g)
    }

    /// Whether all bytes are zero (an unused GPT entry).
    pub fn is_nil(&self) -> bool {
        self.0 == [0; 16]
    }

    /// A well-known name for a partition type GUID.
    pub fn type_name(&self) -> Option<&'static str> {
        const NAMES: &[(&str, &str)] = &[
            ("C12A7328-F81F-11D2-BA4B-00A0C93EC93B", "EFI System"),
            ("21686148-6449-6E6F-744E-656564454649", "BIOS boot"),
            ("0FC63DAF-8483-4772-8E79-3D69D8477DE4", "Linux filesystem"),
            (
                "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709",
                "Linux root (x86-64)",
            ),
            ("0657FD6D-A4AB-43C4-84E5-0933C84B4F4F", "Linux swap"),
            ("E6D6D379-F507-44C2-A23C-238F2A3DF928", "Linux LVM"),
            (
                "BC13C2FF-59E6-4262-A352-B275FD6F7172",
                "Linux extended boot",
            ),
            (
                "EBD0A0A2-B9E5-4433-87C0-68B6B72699C7",
                "Microsoft basic data",
            ),
        ];
        let text = self.to_string();
        NAMES.iter().find(|(g, _)| *g == text).map(|(_, n)| *n)
    }
}

impl fmt::Display for Guid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = &self.0;
        write!(
            f,
            "{:08X}-{:04X}-{:04X}-{:02X}{:02X}-",
            u32::from_le_bytes([b[0], b[1], b[2], b[3]]),
            u16::from_le_bytes([b[4], b[5]]),
            u16::from_le_bytes([b[6], b[7]]),
            b[8],
            b[9]
        )?;
        for x in &b[10..] {
            write!(f, "{x:02X}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Guid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Guid({self})")
    }
}

impl Serialize for Guid {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// A byte range of the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Extent {
    /// First byte.
    pub offset: u64,
    /// Length in bytes.
    pub len: u64,
}

/// The MBR in sector 0, present when it carries the 0x55AA signature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Mbr {
    /// Whether any of the 440 boot-code bytes is non-zero (a protective MBR has none, and
    /// SeaBIOS then hangs without a message).
    pub boot_code: bool,
    /// The 32-bit disk signature at byte 440.
    pub disk_signature: u32,
    /// The used entries (type not 0), in slot order.
    pub entries: Vec<MbrEntry>,
}

impl Mbr {
    /// Whether the MBR only protects a GPT (every used entry is type 0xEE).
    pub fn only_protective(&self) -> bool {
        !self.entries.is_empty() && self.entries.iter().all(|e| e.kind == MBR_PROTECTIVE)
    }

    /// Whether some entry is the GPT protective one (also true of hybrid MBRs).
    pub fn has_protective(&self) -> bool {
        self.entries.iter().any(|e| e.kind == MBR_PROTECTIVE)
    }
}

/// One of the four primary MBR entries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MbrEntry {
    /// Slot number, 1..=4.
    pub number: u8,
    /// The 0x80 "active" flag.
    pub bootable: bool,
    /// Partition type byte.
    pub kind: u8,
    /// First sector.
    pub first_lba: u64,
    /// Length in sectors.
    pub sectors: u64,
}

impl MbrEntry {
    /// Byte range of the partition.
    pub fn extent(&self, sector_size: u64) -> Extent {
        Extent {
            offset: self.first_lba * sector_size,
            len: self.sectors * sector_size,
        }
    }
}

fn mbr_type_name(kind: u8) -> Option<&'static str> {
    Some(match kind {
        0x05 | 0x0f | 0x85 => "extended",
        0x07 => "NTFS/exFAT",
        0x0b | 0x0c => "FAT32",
        0x0e => "FAT16",
        0x82 => "Linux swap",
        0x83 => "Linux",
        0x8e => "Linux LVM",
        0xee => "GPT protective",
        0xef => "EFI System",
        _ => return None,
    })
}

/// The primary GPT.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Gpt {
    /// Disk GUID.
    pub disk_guid: Guid,
    /// First LBA partitions may use.
    pub first_usable_lba: u64,
    /// Last LBA partitions may use.
    pub last_usable_lba: u64,
    /// LBA of the backup header.
    pub alternate_lba: u64,
    /// The used entries (type GUID not nil).
    pub partitions: Vec<GptPartition>,
}

/// One used GPT entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GptPartition {
    /// 1-based index in the entry array (what `/dev/vdaN` calls it).
    pub number: u32,
    /// Partition type.
    pub type_guid: Guid,
    /// Partition GUID.
    pub unique_guid: Guid,
    /// First LBA.
    pub first_lba: u64,
    /// Last LBA (inclusive).
    pub last_lba: u64,
    /// Attribute bits.
    pub attributes: u64,
    /// Partition name (UTF-16LE on disk).
    pub name: String,
}

impl GptPartition {
    /// Byte range of the partition.
    pub fn extent(&self, sector_size: u64) -> Extent {
        Extent {
            offset: self.first_lba * sector_size,
            len: (self.last_lba - self.first_lba + 1) * sector_size,
        }
    }
}

/// What the first sectors of a disk say about its partitions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PartitionTable {
    /// Logical sector size the GPT was found with (512, or 4096); 512 without a GPT.
    pub sector_size: u64,
    /// The MBR, when sector 0 carries 0x55AA.
    pub mbr: Option<Mbr>,
    /// The primary GPT, when LBA 1 says "EFI PART".
    pub gpt: Option<Gpt>,
}

impl PartitionTable {
    fn gpt_partition(&self, ty: Guid) -> Option<&GptPartition> {
        self.gpt
            .as_ref()
            .and_then(|g| g.partitions.iter().find(|p| p.type_guid == ty))
    }

    /// The first EFI System Partition of the GPT.
    pub fn esp(&self) -> Option<&GptPartition> {
        self.gpt_partition(ESP_TYPE)
    }

    /// The first BIOS boot partition of the GPT.
    pub fn bios_boot(&self) -> Option<&GptPartition> {
        self.gpt_partition(BIOS_BOOT_TYPE)
    }

    /// One sentence fragment saying what the disk is ("has a GPT with 2 partitions: …").
    pub fn describe(&self) -> String {
        let plural = |n: usize| if n == 1 { "" } else { "s" };
        if let Some(gpt) = &self.gpt {
            let parts = gpt
                .partitions
                .iter()
                .map(|p| match p.type_guid.type_name() {
                    Some(n) => format!("{} {n}", p.number),
                    None => format!("{} type {}", p.number, p.type_guid),
                })
                .collect::<Vec<_>>();
            let mut s = format!(
                "has a GPT with {} partition{}{}{}",
                parts.len(),
                plural(parts.len()),
                if parts.is_empty() { "" } else { ": " },
                parts.join(", ")
            );
            match &self.mbr {
                Some(m) if m.only_protective() => s.push_str(
                    " behind a protective MBR (its only entry is type 0xEE, which legacy BIOS cannot boot)",
                ),
                Some(m) if m.has_protective() => s.push_str(" and a hybrid MBR"),
                Some(_) => s.push_str(" and an MBR without the protective 0xEE entry"),
                None => s.push_str(" and no MBR boot signature"),
            }
            return s;
        }
        match &self.mbr {
            None => {
                "has no partition table (no 0x55AA boot signature at byte 510, no GPT at LBA 1)"
                    .to_string()
            }
            Some(m) if m.entries.is_empty() => {
                "has the 0x55AA boot signature but no MBR partitions".to_string()
            }
            Some(m) if m.only_protective() => {
                "has a protective MBR (type 0xEE) but no readable GPT".to_string()
            }
            Some(m) => {
                let parts = m
                    .entries
                    .iter()
                    .map(|e| {
                        format!(
                            "{} type 0x{:02x}{}{}",
                            e.number,
                            e.kind,
                            mbr_type_name(e.kind)
                                .map(|n| format!(" {n}"))
                                .unwrap_or_default(),
                            if e.bootable { " (active)" } else { "" }
                        )
                    })
                    .collect::<Vec<_>>();
                format!(
                    "has an MBR partition table and no GPT, with {} partition{}: {}",
                    parts.len(),
                    plural(parts.len()),
                    parts.join(", ")
                )
            }
        }
    }
}

/// The partition table could not be read.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The disk could not be read.
    #[error("cannot read the {what} of the guest disk")]
    Read {
        /// What was being read ("MBR", "GPT header", …).
        what: &'static str,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// Smaller than one sector.
    #[error("the guest disk is only {size} bytes, smaller than one sector")]
    TooSmall {
        /// Virtual size.
        size: u64,
    },
    /// A GPT whose header or entries do not check out.
    #[error("the guest disk's GPT is damaged ({reason}); firmware would not use it")]
    BadGpt {
        /// What is wrong.
        reason: String,
    },
    /// A slice outside the disk.
    #[error("partition extent of {} bytes at offset {} lies outside the {size}-byte disk", extent.len, extent.offset)]
    OutsideDisk {
        /// The asked-for extent.
        extent: Extent,
        /// Disk size.
        size: u64,
    },
}

fn le16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}
fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}
fn le64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

/// CRC-32 (IEEE, as GPT uses it).
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = flate2::Crc::new();
    crc.update(bytes);
    crc.sum()
}

fn read(
    disk: &mut (impl Disk + ?Sized),
    what: &'static str,
    offset: u64,
    len: usize,
) -> Result<Vec<u8>, Error> {
    let mut buf = vec![0u8; len];
    disk.read_exact_at(offset, &mut buf)
        .map_err(|source| Error::Read { what, source })?;
    Ok(buf)
}

fn parse_mbr(sector: &[u8]) -> Option<Mbr> {
    if sector[510..512] != [0x55, 0xAA] {
        return None;
    }
    let entries = (0..4u8)
        .filter_map(|i| {
            let e = &sector[446 + usize::from(i) * 16..][..16];
            (e[4] != 0).then(|| MbrEntry {
                number: i + 1,
                bootable: e[0] & 0x80 != 0,
                kind: e[4],
                first_lba: u64::from(le32(e, 8)),
                sectors: u64::from(le32(e, 12)),
            })
        })
        .collect();
    Some(Mbr {
        boot_code: sector[..440].iter().any(|&b| b != 0),
        disk_signature: le32(sector, 440),
        entries,
    })
}

fn bad_gpt(reason: String) -> Error {
    Error::BadGpt { reason }
}

fn parse_gpt(disk: &mut (impl Disk + ?Sized), header: &[u8], sector: u64) -> Result<Gpt, Error> {
    let header_size = le32(header, 12);
    if !(92..=sector as u32).contains(&header_size) {
        return Err(bad_gpt(format!(
            "header size {header_size} is outside 92..={sector}"
        )));
    }
    let stored = le32(header, 16);
    let mut copy = header[..header_size as usize].to_vec();
    copy[16..20].fill(0);
    let computed = crc32(&copy);
    if stored != computed {
        return Err(bad_gpt(format!(
            "header CRC32 is {stored:08x}, computed {computed:08x}"
        )));
    }
    let my_lba = le64(header, 24);
    if my_lba != 1 {
        return Err(bad_gpt(format!(
            "the primary header says it is at LBA {my_lba}, not 1"
        )));
    }
    let entries_lba = le64(header, 72);
    let count = le32(header, 80);
    let entry_size = le32(header, 84);
    if count > MAX_GPT_ENTRIES
        || entry_size < 128
        || !entry_size.is_multiple_of(8)
        || entry_size > 4096
    {
        return Err(bad_gpt(format!(
            "{count} entries of {entry_size} bytes is not a plausible entry array"
        )));
    }
    let array_len = count as usize * entry_size as usize;
    let array = read(
        disk,
        "GPT partition entries",
        entries_lba.saturating_mul(sector),
        array_len,
    )?;
    let stored = le32(header, 88);
    let computed = crc32(&array);
    if stored != computed {
        return Err(bad_gpt(format!(
            "partition entry array CRC32 is {stored:08x}, computed {computed:08x}"
        )));
    }
    let disk_sectors = disk.size() / sector;
    let mut partitions = Vec::new();
    for (i, e) in array.chunks_exact(entry_size as usize).enumerate() {
        let type_guid = Guid::from_slice(&e[0..16]);
        if type_guid.is_nil() {
            continue;
        }
        let number = i as u32 + 1;
        let first_lba = le64(e, 32);
        let last_lba = le64(e, 40);
        if first_lba > last_lba || last_lba >= disk_sectors {
            return Err(bad_gpt(format!(
                "partition {number} spans LBA {first_lba}..={last_lba}, outside the {disk_sectors}-sector disk"
            )));
        }
        let units: Vec<u16> = (0..36)
            .map(|k| le16(e, 56 + 2 * k))
            .take_while(|&u| u != 0)
            .collect();
        partitions.push(GptPartition {
            number,
            type_guid,
            unique_guid: Guid::from_slice(&e[16..32]),
            first_lba,
            last_lba,
            attributes: le64(e, 48),
            name: String::from_utf16_lossy(&units),
        });
    }
    Ok(Gpt {
        disk_guid: Guid::from_slice(&header[56..72]),
        first_usable_lba: le64(header, 40),
        last_usable_lba: le64(header, 48),
        alternate_lba: le64(header, 32),
        partitions,
    })
}

/// Reads the MBR in sector 0 and the primary GPT at LBA 1 (512-byte sectors, else 4096).
pub fn read_table(disk: &mut (impl Disk + ?Sized)) -> Result<PartitionTable, Error> {
    let size = disk.size();
    if size < 512 {
        return Err(Error::TooSmall { size });
    }
    let sector0 = read(disk, "MBR", 0, 512)?;
    let mbr = parse_mbr(&sector0);
    let mut gpt = None;
    let mut sector_size = 512;
    for candidate in [512u64, 4096] {
        if size < candidate * 2 {
            break;
        }
        let header = read(disk, "GPT header", candidate, candidate as usize)?;
        if &header[..8] == GPT_SIGNATURE {
            gpt = Some(parse_gpt(disk, &header, candidate)?);
            sector_size = candidate;
            break;
        }
    }
    Ok(PartitionTable {
        sector_size,
        mbr,
        gpt,
    })
}

/// The partition table fits the firmware; what proves it, and where the boot partition is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FirmwareFit {
    /// The firmware checked for.
    pub boot: Boot,
    /// Why the disk fits, in words (for the report).
    pub evidence: String,
    /// The EFI System Partition (uefi), for reading its FAT.
    pub esp: Option<Extent>,
    /// The BIOS boot partition (bios on GPT).
    pub bios_boot: Option<Extent>,
    /// Whether the MBR has boot code (bios); without it SeaBIOS hangs silently.
    pub mbr_boot_code: bool,
}

/// The partition table does not fit the firmware the profile asks for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the disk {disk}; {boot} firmware (profile boot: {boot}) needs {needs}; {fix}")]
pub struct FirmwareMismatch {
    /// The firmware checked for.
    pub boot: Boot,
    /// What the disk is ([`PartitionTable::describe`]).
    pub disk: String,
    /// What the firmware needs.
    pub needs: &'static str,
    /// How to fix it.
    pub fix: &'static str,
}

const UEFI_NEEDS: &str = "a GPT disk (with a protective MBR) holding an EFI System Partition \
                          (type C12A7328-F81F-11D2-BA4B-00A0C93EC93B)";
const UEFI_FIX: &str = "build the image with partitionTableType = \"efi\" (or \"hybrid\"), or \
                        set boot: bios in the profile if the platform policy \
                        (profiles/policy.yaml) allows it";
const BIOS_NEEDS: &str = "an MBR partition table with the 0x55AA signature (not only a GPT's \
                          protective 0xEE entry), or a GPT with a BIOS boot partition \
                          (type 21686148-6449-6E6F-744E-656564454649)";
const BIOS_FIX: &str = "build the image with partitionTableType = \"legacy\" (or \
                        \"legacy+gpt\" / \"hybrid\"), or set boot: uefi in the profile \
                        (Hephaestus is UEFI-first)";

/// Checks that the disk can be booted by `boot` firmware: uefi needs a GPT with an EFI System
/// Partition; bios needs a real MBR partition table or a GPT with a BIOS boot partition. A GPT
/// disk's protective MBR is not a BIOS disk.
pub fn check_firmware(table: &PartitionTable, boot: Boot) -> Result<FirmwareFit, FirmwareMismatch> {
    let ss = table.sector_size;
    let mbr_boot_code = table.mbr.as_ref().is_some_and(|m| m.boot_code);
    let mismatch = |needs, fix| FirmwareMismatch {
        boot,
        disk: table.describe(),
        needs,
        fix,
    };
    match boot {
        Boot::Uefi => {
            // EDK2's partition driver ignores a GPT whose MBR lacks the 0xEE entry.
            let protected = table.mbr.as_ref().is_some_and(Mbr::has_protective);
            match table.esp() {
                Some(esp) if protected => Ok(FirmwareFit {
                    boot,
                    evidence: format!(
                        "GPT partition {} is an EFI System Partition ({} bytes at offset {})",
                        esp.number,
                        esp.extent(ss).len,
                        esp.extent(ss).offset
                    ),
                    esp: Some(esp.extent(ss)),
                    bios_boot: table.bios_boot().map(|p| p.extent(ss)),
                    mbr_boot_code,
                }),
                _ => Err(mismatch(UEFI_NEEDS, UEFI_FIX)),
            }
        }
        Boot::Bios => {
            if let Some(p) = table.bios_boot() {
                return Ok(FirmwareFit {
                    boot,
                    evidence: format!("GPT partition {} is a BIOS boot partition", p.number),
                    esp: table.esp().map(|e| e.extent(ss)),
                    bios_boot: Some(p.extent(ss)),
                    mbr_boot_code,
                });
            }
            match &table.mbr {
                Some(m) if m.entries.iter().any(|e| e.kind != MBR_PROTECTIVE) => Ok(FirmwareFit {
                    boot,
                    evidence: format!(
                        "MBR partition table with the 0x55AA signature and {} partition{}{}",
                        m.entries.len(),
                        if m.entries.len() == 1 { "" } else { "s" },
                        if m.boot_code {
                            ""
                        } else {
                            " (its boot code is empty: only a boot check will tell if it boots)"
                        }
                    ),
                    esp: None,
                    bios_boot: None,
                    mbr_boot_code,
                }),
                _ => Err(mismatch(BIOS_NEEDS, BIOS_FIX)),
            }
        }
    }
}

/// One partition of a disk, read as a disk of its own (e.g. the ESP's FAT file system).
pub struct Slice<'a, D: Disk + ?Sized> {
    disk: &'a mut D,
    extent: Extent,
}

impl<'a, D: Disk + ?Sized> Slice<'a, D> {
    /// The bytes of `extent`, which must lie inside `disk`.
    pub fn new(disk: &'a mut D, extent: Extent) -> Result<Self, Error> {
        let size = disk.size();
        if extent
            .offset
            .checked_add(extent.len)
            .is_none_or(|end| end > size)
        {
            return Err(Error::OutsideDisk { extent, size });
        }
        Ok(Slice { disk, extent })
    }

    /// Where the slice lies on the disk.
    pub fn extent(&self) -> Extent {
        self.extent
    }
}

impl<D: Disk + ?Sized> Disk for Slice<'_, D> {
    fn size(&self) -> u64 {
        self.extent.len
    }

    fn read_exact_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        let len = buf.len() as u64;
        if offset
            .checked_add(len)
            .is_none_or(|end| end > self.extent.len)
        {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "cannot read {len} bytes at offset {offset} of a {}-byte partition",
                    self.extent.len
                ),
            ));
        }
        self.disk.read_exact_at(self.extent.offset + offset, buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::disk::MemDisk;

    const LINUX: Guid = Guid::from_fields(
        0x0FC6_3DAF,
        0x8483,
        0x4772,
        [0x8E, 0x79, 0x3D, 0x69, 0xD8, 0x47, 0x7D, 0xE4],
    );

    fn mbr_entry(disk: &mut [u8], slot: usize, kind: u8, first: u32, sectors: u32, active: bool) {
        let e = &mut disk[446 + slot * 16..][..16];
        e[0] = if active { 0x80 } else { 0 };
        e[4] = kind;
        e[8..12].copy_from_slice(&first.to_le_bytes());
        e[12..16].copy_from_slice(&sectors.to_le_bytes());
    }

    /// A 4 MiB disk with a GPT (protective MBR, 128 entries at LBA 2).
    fn gpt_disk(parts: &[(Guid, u64, u64)]) -> MemDisk {
        let mut d = vec![0u8; 4 << 20];
        let sectors = (d.len() / 512) as u64;
        mbr_entry(&mut d, 0, 0xEE, 1, (sectors - 1) as u32, false);
        d[510] = 0x55;
        d[511] = 0xAA;
        for (i, (ty, first, last)) in parts.iter().enumerate() {
            let e = &mut d[1024 + i * 128..][..128];
            e[..16].copy_from_slice(&ty.0);
            e[16] = i as u8 + 1;
            e[32..40].copy_from_slice(&first.to_le_bytes());
            e[40..48].copy_from_slice(&last.to_le_bytes());
            for (k, u) in "part".encode_utf16().enumerate() {
                e[56 + 2 * k..58 + 2 * k].copy_from_slice(&u.to_le_bytes());
            }
        }
        let entries_crc = crc32(&d[1024..1024 + 128 * 128]);
        let h = &mut d[512..1024];
        h[..8].copy_from_slice(GPT_SIGNATURE);
        h[8..12].copy_from_slice(&0x0001_0000u32.to_le_bytes());
        h[12..16].copy_from_slice(&92u32.to_le_bytes());
        h[24..32].copy_from_slice(&1u64.to_le_bytes());
        h[32..40].copy_from_slice(&(sectors - 1).to_le_bytes());
        h[40..48].copy_from_slice(&34u64.to_le_bytes());
        h[48..56].copy_from_slice(&(sectors - 34).to_le_bytes());
        h[72..80].copy_from_slice(&2u64.to_le_bytes());
        h[80..84].copy_from_slice(&128u32.to_le_bytes());
        h[84..88].copy_from_slice(&128u32.to_le_bytes());
        h[88..92].copy_from_slice(&entries_crc.to_le_bytes());
        let crc = crc32(&h[..92]);
        h[16..20].copy_from_slice(&crc.to_le_bytes());
        MemDisk(d)
    }

    #[test]
    fn guid_text_is_mixed_endian() {
        assert_eq!(ESP_TYPE.to_string(), "C12A7328-F81F-11D2-BA4B-00A0C93EC93B");
        assert_eq!(ESP_TYPE.0[..4], [0x28, 0x73, 0x2A, 0xC1]);
        assert_eq!(BIOS_BOOT_TYPE.0, *b"Hah!IdontNeedEFI");
        assert_eq!(ESP_TYPE.type_name(), Some("EFI System"));
    }

    #[test]
    fn crc32_matches_the_ieee_check_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn gpt_with_esp_fits_uefi_not_bios() {
        let mut disk = gpt_disk(&[(ESP_TYPE, 2048, 4095), (LINUX, 4096, 8000)]);
        let table = read_table(&mut disk).unwrap();
        let gpt = table.gpt.as_ref().unwrap();
        assert_eq!(gpt.partitions.len(), 2);
        assert_eq!(gpt.partitions[0].name, "part");
        let fit = check_firmware(&table, Boot::Uefi).unwrap();
        assert_eq!(
            fit.esp,
            Some(Extent {
                offset: 2048 * 512,
                len: 2048 * 512
            })
        );
        let err = check_firmware(&table, Boot::Bios).unwrap_err().to_string();
        assert!(err.contains("protective MBR"), "{err}");
        assert!(err.contains("partitionTableType = \"legacy\""), "{err}");
        assert!(err.contains("1 EFI System, 2 Linux filesystem"), "{err}");
    }

    #[test]
    fn gpt_with_bios_boot_partition_fits_bios() {
        let mut disk = gpt_disk(&[(BIOS_BOOT_TYPE, 34, 2047), (LINUX, 2048, 8000)]);
        let table = read_table(&mut disk).unwrap();
        check_firmware(&table, Boot::Bios).unwrap();
        let err = check_firmware(&table, Boot::Uefi).unwrap_err().to_string();
        assert!(err.contains("partitionTableType = \"efi\""), "{err}");
    }

    #[test]
    fn mbr_fits_bios_not_uefi() {
        let mut d = vec![0u8; 1 << 20];
        mbr_entry(&mut d, 0, 0x83, 2048, 100, true);
        d[510] = 0x55;
        d[511] = 0xAA;
        d[0] = 0xEB;
        let table = read_table(&mut MemDisk(d)).unwrap();
        assert!(table.gpt.is_none());
        let mbr = table.mbr.as_ref().unwrap();
        assert!(mbr.boot_code);
        assert_eq!(mbr.entries[0].kind, 0x83);
        check_firmware(&table, Boot::Bios).unwrap();
        let err = check_firmware(&table, Boot::Uefi).unwrap_err().to_string();
        assert!(err.contains("MBR partition table and no GPT"), "{err}");
        assert!(err.contains("set boot: bios"), "{err}");
    }

    #[test]
    fn blank_disk_fits_nothing() {
        let table = read_table(&mut MemDisk(vec![0; 1 << 20])).unwrap();
        for boot in [Boot::Uefi, Boot::Bios] {
            let err = check_firmware(&table, boot).unwrap_err().to_string();
            assert!(err.contains("no partition table"), "{err}");
        }
    }

    #[test]
    fn damaged_gpt_is_an_error() {
        let mut disk = gpt_disk(&[(ESP_TYPE, 2048, 4095)]);
        disk.0[1024 + 40] ^= 1;
        let err = read_table(&mut disk).unwrap_err().to_string();
        assert!(err.contains("entry array CRC32"), "{err}");
    }

    #[test]
    fn slice_reads_inside_its_partition_only() {
        let mut disk = gpt_disk(&[(ESP_TYPE, 2048, 4095)]);
        disk.0[2048 * 512] = 0xAB;
        let table = read_table(&mut disk).unwrap();
        let extent = table.esp().unwrap().extent(table.sector_size);
        let mut s = Slice::new(&mut disk, extent).unwrap();
        let mut b = [0u8; 1];
        s.read_exact_at(0, &mut b).unwrap();
        assert_eq!(b[0], 0xAB);
        assert!(s.read_exact_at(extent.len, &mut b).is_err());
        let far = Extent {
            offset: 1 << 30,
            len: 1,
        };
        assert!(Slice::new(&mut disk, far).is_err());
    }
}
