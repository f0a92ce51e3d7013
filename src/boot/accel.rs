//! Choosing between KVM and TCG: KVM only when a tiny probe guest really runs under it.
//!
//! `/dev/kvm` can exist on a CPU without vmx/svm (measured on the development machine): OVMF
//! then dies with "KVM internal error … emulation failure" and SeaBIOS runs about 100 times
//! slower than under TCG. So `auto` boots a probe under KVM with the same firmware, with a
//! deadline of seconds, and falls back to TCG unless the probe passes. The answer is kept for
//! the life of the process (one probe per firmware type).

use super::qemu::{self, Ending, Firmware, Guest};
use super::{Accel, Error};
use crate::firmware::Boot;
use regex::Regex;
use std::collections::HashMap;
use std::path::Path;
use std::sync::LazyLock;
use std::time::Duration;
use tokio::sync::Mutex;

/// SeaBIOS reaches the MBR in well under a second under working KVM (0.2 s under TCG).
const BIOS_PROBE: Duration = Duration::from_secs(2);
/// OVMF reaches its boot manager in a few seconds under working KVM (4–5 s under TCG).
const UEFI_PROBE: Duration = Duration::from_secs(15);

/// MBR code of the probe disk (the fixtures' `mbr.asm`, assembled): prints the CX bytes at
/// 0x7C26 XOR 0x5A on COM1, then powers off through ACPI and halts.
const PROBE_CODE: [u8; 38] = [
    0xfa, // cli
    0x31, 0xc0, 0x8e, 0xd8, // xor ax, ax; mov ds, ax
    0xbe, 0x26, 0x7c, // mov si, 0x7c26 (the message, right after this code)
    0xb9, 0x00, 0x00, // mov cx, <length> (patched)
    0xba, 0xf8, 0x03, // mov dx, 0x3f8 (COM1)
    0xac, 0x34, 0x5a, 0xee, 0xe2, 0xfa, // lodsb; xor al, 0x5a; out dx, al; loop
    0xb0, 0x10, 0xe6, 0xf4, // isa-debug-exit
    0xb8, 0x00, 0x20, 0xba, 0x04, 0xb0, 0xef, // ACPI S5 on PIIX4
    0xba, 0x04, 0x06, 0xef, // ACPI S5 on ICH9
    0xf4, 0xeb, 0xfd, // hlt; jmp hlt
];
const PROBE_TEXT: &[u8] = b"HEPHAESTUS-KVM-PROBE-OK\r\n";
const PROBE_MARKER: &str = "HEPHAESTUS-KVM-PROBE-OK";
/// OVMF's boot manager announcing what it tries: the firmware ran to the end of its init.
const UEFI_PROBE_MARKER: &str = "BdsDxe: ";

/// A 64 KiB raw disk whose MBR prints `PROBE_TEXT`; the text is stored XOR-ed, so only a
/// guest that really ran can print it.
pub fn probe_disk() -> Vec<u8> {
    let mut disk = vec![0u8; 64 * 1024];
    disk[..PROBE_CODE.len()].copy_from_slice(&PROBE_CODE);
    let len = PROBE_TEXT.len() as u16;
    disk[9..11].copy_from_slice(&len.to_le_bytes());
    for (i, b) in PROBE_TEXT.iter().enumerate() {
        disk[PROBE_CODE.len() + i] = b ^ 0x5a;
    }
    disk[510] = 0x55;
    disk[511] = 0xaa;
    disk
}

/// Whether this process may open /dev/kvm for reading and writing.
fn kvm_device_usable() -> Result<(), String> {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .map(drop)
        .map_err(|e| format!("/dev/kvm: {e}"))
}

static CHOSEN: LazyLock<Mutex<HashMap<Boot, (Accel, String)>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

/// Resolves `accel` to `Tcg` or `Kvm`, with the reason (for the log and the report).
pub async fn resolve(
    accel: Accel,
    qemu: &Path,
    firmware: &Firmware,
    dir: &Path,
) -> Result<(Accel, String), Error> {
    match accel {
        Accel::Tcg => return Ok((Accel::Tcg, "tcg as configured".into())),
        Accel::Kvm => {
            return match kvm_device_usable() {
                Ok(()) => Ok((Accel::Kvm, "kvm as configured".into())),
                Err(reason) => Err(Error::KvmUnavailable { reason }),
            }
        }
        Accel::Auto => {}
    }
    // Held across the probe so that concurrent checks probe once.
    let mut chosen = CHOSEN.lock().await;
    if let Some(c) = chosen.get(&firmware.boot) {
        return Ok(c.clone());
    }
    let c = match kvm_device_usable() {
        Err(reason) => (Accel::Tcg, format!("tcg: {reason}")),
        Ok(()) => probe(qemu, firmware, &dir.join("kvm-probe")).await?,
    };
    tracing::info!(firmware = %firmware.boot, accel = ?c.0, reason = %c.1, "accelerator chosen");
    chosen.insert(firmware.boot, c.clone());
    Ok(c)
}

async fn probe(qemu: &Path, firmware: &Firmware, dir: &Path) -> Result<(Accel, String), Error> {
    std::fs::create_dir_all(dir).map_err(|source| Error::RunDir {
        path: dir.to_path_buf(),
        source,
    })?;
    let disk = dir.join("probe.raw");
    let (marker, timeout, with_disk) = match firmware.boot {
        Boot::Bios => (PROBE_MARKER, BIOS_PROBE, true),
        Boot::Uefi => (UEFI_PROBE_MARKER, UEFI_PROBE, false),
    };
    if with_disk {
        std::fs::write(&disk, probe_disk()).map_err(|source| Error::RunDir {
            path: disk.clone(),
            source,
        })?;
    }
    let marker = Regex::new(&regex::escape(marker)).map_err(|e| Error::BadMarker {
        marker: marker.into(),
        source: Box::new(e),
    })?;
    let guest = Guest {
        qemu,
        accel: Accel::Kvm,
        firmware,
        disk: with_disk.then_some((disk.as_path(), "raw")),
        memory_mib: 256,
        cpus: 1,
        marker: &marker,
        other_login: None,
        config_drive: None,
        timeout,
        dir,
    };
    let done = qemu::run(&guest).await?;
    let why = match &done.ending {
        Ending::Marker(_) => {
            return Ok((
                Accel::Kvm,
                format!("kvm: probe boot passed in {:.1} s", done.seconds),
            ))
        }
        Ending::KvmFailure => "QEMU reported a KVM internal error".to_owned(),
        Ending::Timeout => format!("no sign of life within {} s", timeout.as_secs()),
        Ending::Failure(line) | Ending::OtherLogin(line) => format!("it printed {line:?}"),
        Ending::Exited(status) => format!(
            "QEMU exited ({status}): {}",
            done.stderr_tail(3).join(" / ")
        ),
    };
    Ok((
        Accel::Tcg,
        format!(
            "tcg: /dev/kvm is there but a probe boot under KVM failed ({why}; log {})",
            done.serial_log.display()
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_disk_is_a_bootable_mbr_hiding_its_text() {
        let d = probe_disk();
        assert_eq!(&d[510..512], &[0x55, 0xaa]);
        assert_eq!(u16::from_le_bytes([d[9], d[10]]) as usize, PROBE_TEXT.len());
        let decoded: Vec<u8> = d[38..38 + PROBE_TEXT.len()]
            .iter()
            .map(|b| b ^ 0x5a)
            .collect();
        assert_eq!(decoded, PROBE_TEXT);
        assert!(!d
            .windows(PROBE_MARKER.len())
            .any(|w| w == PROBE_MARKER.as_bytes()));
        assert!(38 + PROBE_TEXT.len() <= 440);
    }
}
