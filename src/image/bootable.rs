//! The static boot pre-check: does the disk carry what its firmware will look for, before
//! anything boots? A UEFI-only disk under SeaBIOS hangs without a word, so only this (or a
//! long timeout) would notice it. Pure reading of the image: the boot check runs it before
//! starting QEMU.

use super::fat::{self, Fat};
use super::partition::{self, FirmwareMismatch, Slice};
use super::qcow2::{self, GuestReader};
use crate::firmware::Boot;
use std::path::{Path, PathBuf};

/// Why the pre-check refused an image.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Pre-check: the image is not a readable qcow2.
    #[error("cannot read the image for the boot pre-check")]
    Unreadable {
        /// The image.
        image: PathBuf,
        /// The cause (names the file).
        #[source]
        source: Box<qcow2::Error>,
    },
    /// Pre-check: the partition table could not be read.
    #[error("{}: cannot read the partition table for the boot pre-check", image.display())]
    PartitionTable {
        /// The image.
        image: PathBuf,
        /// The cause.
        #[source]
        source: Box<partition::Error>,
    },
    /// Pre-check: the partition table does not fit the firmware.
    #[error("{} cannot boot under {boot} firmware (pre-check, nothing was booted)", image.display())]
    WrongDisk {
        /// The image.
        image: PathBuf,
        /// The firmware.
        boot: Boot,
        /// What the disk is and what the firmware needs.
        #[source]
        source: Box<FirmwareMismatch>,
    },
    /// Pre-check: bios, and the MBR has no boot code.
    #[error(
        "{} cannot boot under bios firmware (pre-check, nothing was booted): the MBR's boot code \
         is empty (its first 440 bytes are zero), so SeaBIOS would stop after \"Booting from \
         Hard Disk...\" and hang without a message; the disk {disk}; install a BIOS boot loader \
         (boot.loader.grub.device) or tag the profile boot: uefi",
        image.display()
    )]
    NoBootCode {
        /// The image.
        image: PathBuf,
        /// What the disk is.
        disk: String,
    },
    /// Pre-check: the ESP's FAT could not be read.
    #[error(
        "{}: cannot read the FAT of the EFI System Partition (at byte {offset}) for the boot \
         pre-check", image.display()
    )]
    Esp {
        /// The image.
        image: PathBuf,
        /// Where the ESP starts.
        offset: u64,
        /// The cause.
        #[source]
        source: Box<fat::Error>,
    },
    /// Pre-check: uefi, and the ESP lacks the removable-media loader.
    #[error(
        "{} cannot boot under uefi firmware (pre-check, nothing was booted): its EFI System \
         Partition has no usable \\EFI\\BOOT\\BOOTX64.EFI ({detail}); with a fresh NVRAM, as on \
         Nova, OVMF boots only that path and would end in the UEFI shell; install the boot \
         loader as removable (boot.loader.efi.canTouchEfiVariables = false with \
         boot.loader.grub.efiInstallAsRemovable = true, or systemd-boot's fallback copy)",
        image.display()
    )]
    NoFallbackLoader {
        /// The image.
        image: PathBuf,
        /// What was found instead.
        detail: String,
    },
}

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
