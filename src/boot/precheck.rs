//! The static pre-check: does the disk carry what its firmware will look for, before anything
//! boots? A UEFI-only disk under SeaBIOS hangs without a word, so only this (or a long
//! timeout) would notice it.

use super::fat::Fat;
use super::Error;
use crate::firmware::Boot;
use crate::image::partition::{self, Slice};
use crate::image::reader::GuestReader;
use std::path::Path;

/// The removable-media path that UEFI firmware boots when its NVRAM has no boot entries, as a
/// fresh Nova instance's does (UEFI spec 3.5.1.1, for x64).
pub const FALLBACK_LOADER: &str = "\\EFI\\BOOT\\BOOTX64.EFI";

/// Checks, by reading the image (never booting it), that `boot` firmware can start it:
/// - bios: an MBR with the 0x55AA signature and non-zero boot code in its first 440 bytes
///   (plus, per the partition check, an MBR partition table or a GPT BIOS boot partition);
/// - uefi: a GPT with an EFI System Partition whose FAT holds `\EFI\BOOT\BOOTX64.EFI`, a
///   non-empty PE file ("MZ").
pub fn precheck(image: &Path, boot: Boot) -> Result<(), Error> {
    let mut reader = GuestReader::open(image).map_err(|source| Error::Unreadable {
        image: image.to_path_buf(),
        source: Box::new(source),
    })?;
    let table = partition::read_table(&mut reader).map_err(|source| Error::PartitionTable {
        image: image.to_path_buf(),
        source: Box::new(source),
    })?;
    let fit = partition::check_firmware(&table, boot).map_err(|source| Error::WrongDisk {
        image: image.to_path_buf(),
        boot,
        source: Box::new(source),
    })?;
    match boot {
        Boot::Bios => {
            if !fit.mbr_boot_code {
                return Err(Error::NoBootCode {
                    image: image.to_path_buf(),
                    disk: table.describe(),
                });
            }
            Ok(())
        }
        Boot::Uefi => {
            let Some(esp) = fit.esp else {
                // check_firmware only accepts uefi disks with an ESP.
                return Err(Error::NoFallbackLoader {
                    image: image.to_path_buf(),
                    detail: "no EFI System Partition".into(),
                });
            };
            let esp_err = |source| Error::Esp {
                image: image.to_path_buf(),
                offset: esp.offset,
                source: Box::new(source),
            };
            let mut slice =
                Slice::new(&mut reader, esp).map_err(|source| Error::PartitionTable {
                    image: image.to_path_buf(),
                    source: Box::new(source),
                })?;
            let mut fat = Fat::open(&mut slice).map_err(esp_err)?;
            let Some(entry) = fat.find(FALLBACK_LOADER).map_err(esp_err)? else {
                return Err(Error::NoFallbackLoader {
                    image: image.to_path_buf(),
                    detail: "the file is missing".into(),
                });
            };
            if entry.is_dir {
                return Err(Error::NoFallbackLoader {
                    image: image.to_path_buf(),
                    detail: "it is a directory".into(),
                });
            }
            let head = fat.read_head(&entry, 2).map_err(esp_err)?;
            if head != b"MZ" {
                return Err(Error::NoFallbackLoader {
                    image: image.to_path_buf(),
                    detail: format!(
                        "it is {} bytes and not an EFI (PE) executable: it does not start with \"MZ\"",
                        entry.size
                    ),
                });
            }
            Ok(())
        }
    }
}
