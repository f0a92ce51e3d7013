//! `hephaestus::boot` against real QEMU (TCG), OVMF and SeaBIOS, booting the fixture flake's
//! images: every profile's Linux guest boots under its firmware with a fresh config drive and
//! shows the drive's random host name, an image that ignores its metadata is refused, the
//! broken ones are refused with a message that names the firmware, what was seen and the
//! serial log, the image is unchanged, and no QEMU process is left behind.
//!
//! Needs `make install-boot` (QEMU, OVMF, SeaBIOS, GRUB, xorriso), `make install-guest` (the
//! guests' kernel) and `make install-nix`; without them the tests fail and say so. Guests get
//! one vCPU, so the library's core budget boots as many side by side as the host has cores;
//! run logs stay under the target directory.

use super::nix::{installable, offline_config};
use hephaestus::boot::{self, Accel, BootOptions, Error, Metadata};
use hephaestus::firmware::Boot;
use hephaestus::image::bootable::{self, Error as PrecheckError};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

/// The Linux fixtures reach their prompt in 7–12 s under TCG, the tiny ones in 5 s (OVMF) or
/// under 1 s (SeaBIOS); this only bounds a hang, with room for a busy machine.
const FIXTURE_TIMEOUT: Duration = Duration::from_secs(90);

/// Panics (failing the test) with the fix when QEMU or its firmware is missing.
fn require_qemu() {
    static CHECKED: OnceLock<()> = OnceLock::new();
    CHECKED.get_or_init(|| {
        match Command::new("qemu-system-x86_64").arg("--version").output() {
            Ok(out) if out.status.success() => {}
            Ok(out) => panic!("`qemu-system-x86_64 --version` failed: {out:?}"),
            Err(e) => panic!(
                "qemu-system-x86_64 cannot be run ({e}); the boot tests need QEMU, OVMF and \
                 SeaBIOS: run `make install-boot` (scripts/install-boot.sh, as root)"
            ),
        }
        if let Err(e) = boot::qemu::find_firmware(Boot::Uefi, Path::new("qemu-system-x86_64")) {
            panic!("{e}");
        }
    });
}

/// The fixture outputs used here, built once: attribute -> image file.
fn images() -> &'static HashMap<String, PathBuf> {
    static IMAGES: OnceLock<HashMap<String, PathBuf>> = OnceLock::new();
    IMAGES.get_or_init(|| {
        let profiles = ["lucy", "makise", "quinn", "generic", "sunraku"];
        let attrs: Vec<String> = profiles
            .iter()
            .map(|p| format!("images.{p}"))
            .chain(["lucy", "sunraku"].iter().map(|p| format!("tiny.{p}")))
            .chain(
                [
                    "uefi-disk-tagged-bios",
                    "bios-disk-tagged-uefi",
                    "esp-without-loader",
                    "ignores-metadata",
                ]
                .iter()
                .map(|b| format!("broken.{b}")),
            )
            .collect();
        let out = Command::new("nix")
            .env("NIX_CONFIG", offline_config())
            .args(["build", "--json", "--no-link"])
            .args(attrs.iter().map(|a| installable(a)))
            .output()
            .expect("nix runs (checked by offline_config)");
        assert!(
            out.status.success(),
            "building the fixtures failed (are GRUB, nasm and cpio installed, and the guest \
             kernel unpacked? `make install-boot install-guest`): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let built: Vec<serde_json::Value> =
            serde_json::from_slice(&out.stdout).expect("nix build --json prints JSON");
        assert_eq!(built.len(), attrs.len(), "{built:?}");
        // `nix build --json` does not keep the order of the installables: match each output
        // by its derivation name, hephaestus-<profile or broken name>-image (flake.nix).
        attrs
            .into_iter()
            .map(|attr| {
                let suffix = match attr.split_once('.') {
                    Some(("tiny", p)) => format!("-hephaestus-tiny-{p}-image.drv"),
                    Some((_, n)) => format!("-hephaestus-{n}-image.drv"),
                    None => format!("-hephaestus-{attr}-image.drv"),
                };
                let b = built
                    .iter()
                    .find(|b| b["drvPath"].as_str().is_some_and(|d| d.ends_with(&suffix)))
                    .unwrap_or_else(|| panic!("no output for {attr} in {built:?}"));
                let dir = b["outputs"]["out"].as_str().expect("an out path");
                (attr, Path::new(dir).join("nixos.qcow2"))
            })
            .collect()
    })
}

/// The image file of fixture attribute `attr` (e.g. `images.generic`), built once.
pub fn image(attr: &str) -> PathBuf {
    images()
        .get(attr)
        .unwrap_or_else(|| panic!("{attr} is not built by images()"))
        .clone()
}

/// A fresh run directory under the target directory (kept after the test for its logs).
fn run_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("boot")
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create the run directory");
    dir
}

fn sha256(path: &Path) -> String {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A boot without metadata that waits for the tiny fixtures' marker.
fn options(profile: &str) -> BootOptions {
    BootOptions {
        timeout: Some(FIXTURE_TIMEOUT),
        accel: Accel::Tcg,
        memory_mib: 256,
        cpus: 1,
        ..BootOptions::new(boot::fixture_marker(profile))
    }
}

/// A boot with a fresh config drive, as a publishing pipeline does it.
fn with_config_drive() -> BootOptions {
    BootOptions {
        timeout: Some(FIXTURE_TIMEOUT),
        accel: Accel::Tcg,
        memory_mib: 256,
        cpus: 1,
        metadata: Metadata::ConfigDrive,
        ..BootOptions::default()
    }
}

/// No process whose command line mentions `dir` (QEMU's serial log is in it) is alive.
fn assert_no_qemu_in(dir: &Path) {
    let needle = dir.to_string_lossy().into_owned();
    for entry in std::fs::read_dir("/proc").expect("/proc") {
        let Ok(entry) = entry else { continue };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        assert!(
            !cmdline.contains(&needle) || !cmdline.contains("qemu"),
            "a QEMU process is still running: pid {:?}: {cmdline}",
            entry.file_name()
        );
    }
}

/// Boots `images.<profile>` with a fresh config drive: it must show the drive's host name.
async fn boot_ok(profile: &str, boot: Boot) {
    require_qemu();
    let img = image(&format!("images.{profile}"));
    let before = sha256(&img);
    let dir = run_dir(&format!("ok-{profile}"));
    let report = boot::boot_check(&img, boot, &with_config_drive(), &dir)
        .await
        .unwrap_or_else(|e| panic!("{profile} ({boot}) did not boot: {e}"));
    let drive = report.config_drive.as_ref().expect("a config drive");
    let hostname = &drive.identity.hostname;
    assert_eq!(report.metadata, Metadata::ConfigDrive);
    assert_eq!(report.matched_line, format!("{hostname} login:"));
    assert!(drive.iso.starts_with(&dir), "{}", drive.iso.display());
    assert_eq!(report.accel_used, Accel::Tcg);
    assert_eq!(report.firmware.boot, boot);
    assert_eq!(report.sha256, before, "the report's digest is the image's");
    assert_eq!(sha256(&img), before, "{} changed", img.display());
    assert!(report.serial_log.starts_with(&dir));
    let log = std::fs::read_to_string(&report.serial_log).unwrap_or_default();
    assert!(
        log.contains(&format!("instance {}", drive.identity.uuid)),
        "the guest names the instance uuid it read: {log}"
    );
    let pid = report.qemu_pid.expect("QEMU's pid");
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "QEMU (pid {pid}) is still there"
    );
    assert_no_qemu_in(&dir);
    eprintln!(
        "{profile}: {boot} boot with a config drive in {:.2} s, host {hostname}",
        report.seconds
    );
}

#[tokio::test]
async fn lucy_boots_under_ovmf_and_reads_its_config_drive() {
    boot_ok("lucy", Boot::Uefi).await;
}

#[tokio::test]
async fn makise_boots_under_ovmf_and_reads_its_config_drive() {
    boot_ok("makise", Boot::Uefi).await;
}

#[tokio::test]
async fn quinn_boots_under_ovmf_and_reads_its_config_drive() {
    boot_ok("quinn", Boot::Uefi).await;
}

#[tokio::test]
async fn generic_boots_under_ovmf_and_reads_its_config_drive() {
    boot_ok("generic", Boot::Uefi).await;
}

#[tokio::test]
async fn sunraku_boots_under_seabios_and_reads_its_config_drive() {
    boot_ok("sunraku", Boot::Bios).await;
}

#[tokio::test]
async fn an_image_that_ignores_its_config_drive_is_refused() {
    require_qemu();
    let img = image("broken.ignores-metadata");
    let dir = run_dir("ignores-metadata");
    let err = boot::boot_check(&img, Boot::Uefi, &with_config_drive(), &dir)
        .await
        .expect_err("a guest that never reads its metadata must not pass");
    let Error::MetadataIgnored { hostname, line, .. } = &err else {
        panic!("expected MetadataIgnored, got {err:?}");
    };
    assert_eq!(line, "nixos login:");
    let msg = err.to_string();
    assert!(msg.contains("ignored its metadata"), "{msg}");
    assert!(msg.contains("\"nixos login:\""), "the prompt it saw: {msg}");
    assert!(msg.contains(&format!("{hostname} login:")), "{msg}");
    assert!(msg.contains("config-drive.iso"), "{msg}");
    assert_no_qemu_in(&dir);
}

#[tokio::test]
async fn without_metadata_the_same_guest_passes_on_any_login_prompt() {
    // metadata: none keeps the marker-only check: the guest finds no drive, waits for one,
    // and says `localhost login:`, which the default marker accepts.
    require_qemu();
    let img = image("images.sunraku");
    let dir = run_dir("no-metadata-linux");
    let opts = BootOptions {
        metadata: Metadata::None,
        ..with_config_drive()
    };
    let report = boot::boot_check(&img, Boot::Bios, &opts, &dir)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(report.matched_line, "localhost login:");
    assert!(report.config_drive.is_none());
    assert!(!dir.join("config-drive.iso").exists());
    eprintln!(
        "sunraku: bios boot without a config drive in {:.2} s",
        report.seconds
    );
}

#[tokio::test]
async fn tiny_disks_pass_on_their_marker_without_metadata() {
    require_qemu();
    for (profile, boot) in [("lucy", Boot::Uefi), ("sunraku", Boot::Bios)] {
        let img = image(&format!("tiny.{profile}"));
        let dir = run_dir(&format!("tiny-{profile}"));
        let report = boot::boot_check(&img, boot, &options(profile), &dir)
            .await
            .unwrap_or_else(|e| panic!("{profile}: {e}"));
        assert_eq!(report.matched_line, format!("HEPHAESTUS-BOOT-OK {profile}"));
        assert_eq!(report.metadata, Metadata::None);
        eprintln!("tiny {profile}: {boot} boot in {:.2} s", report.seconds);
    }
}

#[tokio::test]
async fn the_config_drive_is_an_iso_labelled_config_2_with_the_openstack_files() {
    let dir = run_dir("config-drive");
    let drive = boot::config_drive::build(&dir)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let iso = std::fs::read(&drive.iso).expect("the ISO");
    // ISO9660: the primary volume descriptor at sector 16, its volume id at byte 40.
    assert_eq!(&iso[0x8001..0x8006], b"CD001");
    assert_eq!(&iso[0x8028..0x8030], b"config-2");
    let meta: serde_json::Value = serde_json::from_slice(
        &std::fs::read(dir.join("config-drive/openstack/latest/meta_data.json")).expect("meta"),
    )
    .expect("JSON");
    assert_eq!(meta["hostname"], drive.identity.hostname.as_str());
    assert_eq!(meta["uuid"], drive.identity.uuid.as_str());
    assert!(meta["public_keys"]["boot-check"]
        .as_str()
        .is_some_and(|k| k.starts_with("ssh-ed25519 ")));
    // The files are stored as they are: the host name and the user-data are in the image.
    let has = |needle: &str| iso.windows(needle.len()).any(|w| w == needle.as_bytes());
    assert!(has(&drive.identity.hostname));
    assert!(has("#cloud-config"));
    // Another boot, another host.
    let again = boot::config_drive::build(&dir).await.expect("second drive");
    assert_ne!(again.identity.hostname, drive.identity.hostname);
}

#[tokio::test]
async fn uefi_disk_tagged_bios_is_refused_by_the_precheck() {
    require_qemu();
    let img = image("broken.uefi-disk-tagged-bios");
    let dir = run_dir("uefi-disk-tagged-bios");
    let err = boot::boot_check(&img, Boot::Bios, &options("sunraku"), &dir)
        .await
        .expect_err("a UEFI-only disk must not pass under SeaBIOS");
    assert!(
        matches!(err, Error::Precheck(PrecheckError::WrongDisk { .. })),
        "{err:?}"
    );
    let msg = format!(
        "{err}: {}",
        std::error::Error::source(&err)
            .map(|s| s.to_string())
            .unwrap_or_default()
    );
    assert!(msg.contains("bios firmware"), "{msg}");
    assert!(msg.contains("nothing was booted"), "{msg}");
    assert!(msg.contains("protective MBR"), "{msg}");
    assert!(
        !dir.join("serial.log").exists(),
        "QEMU must not have been started"
    );
}

#[test]
fn an_mbr_without_boot_code_is_refused_by_the_precheck() {
    // An MBR partition table SeaBIOS would accept, but zero boot code: it would hang.
    let dir = tempfile::tempdir().expect("tempdir");
    let raw = dir.path().join("blank.raw");
    std::fs::File::create(&raw)
        .and_then(|f| f.set_len(4 << 20))
        .expect("raw disk");
    let mut sfdisk = Command::new("sfdisk")
        .args(["--quiet"])
        .arg(&raw)
        .stdin(std::process::Stdio::piped())
        .spawn()
        .expect("sfdisk (make install-nix)");
    std::io::Write::write_all(
        sfdisk.stdin.as_mut().expect("stdin"),
        b"label: dos\nstart=2048, type=83, bootable\n",
    )
    .expect("sfdisk input");
    assert!(sfdisk.wait().expect("sfdisk").success());
    let img = dir.path().join("blank.qcow2");
    let st = Command::new("qemu-img")
        .args(["convert", "-q", "-f", "raw", "-O", "qcow2"])
        .args([&raw, &img])
        .status()
        .expect("qemu-img");
    assert!(st.success());
    let err = bootable::precheck(&img, Boot::Bios).expect_err("no boot code");
    assert!(matches!(err, PrecheckError::NoBootCode { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("bios firmware"), "{msg}");
    assert!(msg.contains("first 440 bytes are zero"), "{msg}");
}

#[tokio::test]
async fn esp_without_fallback_loader_is_refused_by_the_precheck() {
    require_qemu();
    let img = image("broken.esp-without-loader");
    let dir = run_dir("esp-without-loader");
    let err = boot::boot_check(&img, Boot::Uefi, &options("lucy"), &dir)
        .await
        .expect_err("no BOOTX64.EFI");
    assert!(
        matches!(err, Error::Precheck(PrecheckError::NoFallbackLoader { .. })),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(msg.contains("uefi firmware"), "{msg}");
    assert!(msg.contains("\\EFI\\BOOT\\BOOTX64.EFI"), "{msg}");
    assert!(msg.contains("missing"), "{msg}");
    assert!(!dir.join("serial.log").exists());
}

#[tokio::test]
async fn bios_disk_under_ovmf_fails_early_in_the_uefi_shell() {
    require_qemu();
    let img = image("broken.bios-disk-tagged-uefi");
    // The pre-check would refuse it (an MBR disk has no ESP); boot it anyway to prove the
    // firmware's own failure is caught at once rather than at the timeout.
    assert!(matches!(
        bootable::precheck(&img, Boot::Uefi),
        Err(PrecheckError::WrongDisk { .. })
    ));
    let before = sha256(&img);
    let dir = run_dir("bios-disk-tagged-uefi");
    let opts = BootOptions {
        precheck: false,
        ..options("lucy")
    };
    let err = boot::boot_check(&img, Boot::Uefi, &opts, &dir)
        .await
        .expect_err("OVMF has no CSM: a BIOS disk must not boot");
    let Error::BootFailed { line, ev } = &err else {
        panic!("expected BootFailed, got {err:?}");
    };
    assert!(
        line.contains("UEFI Interactive Shell") || line.contains("Press ESC"),
        "{line}"
    );
    // BootFailed, not Timeout: the shell was recognised as it appeared.
    assert!(ev.tail.contains("UEFI Interactive Shell"), "{}", ev.tail);
    let msg = err.to_string();
    assert!(msg.contains("uefi firmware (OVMF"), "{msg}");
    assert!(
        msg.contains(&dir.join("serial.log").display().to_string()),
        "{msg}"
    );
    assert!(
        msg.contains("  | "),
        "the message quotes the log's last lines: {msg}"
    );
    assert_eq!(sha256(&img), before);
    assert_no_qemu_in(&dir);
}

#[tokio::test]
async fn a_hung_guest_is_killed_at_the_timeout() {
    // A UEFI-only disk under SeaBIOS hangs after "Booting from Hard Disk..." for ever.
    require_qemu();
    let img = image("broken.uefi-disk-tagged-bios");
    let dir = run_dir("hung-guest");
    let opts = BootOptions {
        precheck: false,
        timeout: Some(Duration::from_secs(5)),
        ..options("sunraku")
    };
    let err = boot::boot_check(&img, Boot::Bios, &opts, &dir)
        .await
        .expect_err("a hung guest must fail");
    let Error::Timeout { ev, .. } = &err else {
        panic!("expected Timeout, got {err:?}");
    };
    assert!(ev.tail.contains("Booting from Hard Disk"), "{}", ev.tail);
    let msg = err.to_string();
    assert!(msg.contains("bios firmware (SeaBIOS"), "{msg}");
    assert!(msg.contains("within 5 s"), "{msg}");
    assert!(msg.contains("serial.log"), "{msg}");
    assert_no_qemu_in(&dir);
}

#[tokio::test]
async fn a_changed_digest_is_an_error() {
    // The digest the caller vouches for differs from the file after the boot: refused.
    require_qemu();
    let img = image("tiny.sunraku");
    let dir = run_dir("digest-mismatch");
    let opts = BootOptions {
        expected_sha256: Some("0".repeat(64)),
        ..options("sunraku")
    };
    let err = boot::boot_check(&img, Boot::Bios, &opts, &dir)
        .await
        .expect_err("digest mismatch");
    let Error::ImageChanged { before, after, .. } = &err else {
        panic!("expected ImageChanged, got {err:?}");
    };
    assert_eq!(before, &"0".repeat(64));
    assert_eq!(after, &sha256(&img));
}

#[tokio::test]
async fn auto_accel_falls_back_to_a_working_choice() {
    // Whatever KVM does on this machine, `auto` must end in a boot that passes.
    require_qemu();
    let img = image("tiny.sunraku");
    let dir = run_dir("auto-accel");
    let opts = BootOptions {
        accel: Accel::Auto,
        ..options("sunraku")
    };
    let report = boot::boot_check(&img, Boot::Bios, &opts, &dir)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_ne!(report.accel_used, Accel::Auto);
    assert!(!report.accel_reason.is_empty());
    eprintln!(
        "auto, bios: {} ({})",
        report.accel_used, report.accel_reason
    );
    assert_no_qemu_in(&dir);
    // The OVMF probe, which is what dies under a KVM without vmx/svm.
    let qemu = Path::new("qemu-system-x86_64");
    let ovmf = boot::qemu::find_firmware(Boot::Uefi, qemu).unwrap_or_else(|e| panic!("{e}"));
    let started = std::time::Instant::now();
    let (accel, reason) = boot::accel::resolve(Accel::Auto, qemu, &ovmf, &dir)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_ne!(accel, Accel::Auto);
    eprintln!(
        "auto, uefi: {accel} ({reason}), decided in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    assert_no_qemu_in(&dir);
}

#[tokio::test]
async fn missing_qemu_names_the_install_target() {
    let dir = run_dir("missing-qemu");
    let opts = BootOptions {
        qemu: PathBuf::from("/nonexistent/qemu-system-x86_64"),
        precheck: false,
        expected_sha256: Some("0".repeat(64)),
        ..options("sunraku")
    };
    let err = boot::boot_check(Path::new("/nonexistent.qcow2"), Boot::Bios, &opts, &dir)
        .await
        .expect_err("no QEMU");
    assert!(matches!(err, Error::QemuMissing { .. }), "{err:?}");
    assert!(err.to_string().contains("make install-boot"), "{err}");
}

#[test]
fn the_boot_check_command_says_in_words_what_it_booted_with() {
    require_qemu();
    let dir = run_dir("command");
    let boot_check = |attr: &str, extra: &[&str]| {
        let mut cmd = crate::util::pipeline(&crate::util::repo());
        cmd.arg("boot-check")
            .arg(image(attr))
            .args(["--profile", "sunraku", "--accel", "tcg", "--timeout", "90"])
            .args(extra)
            .arg("--run-dir")
            .arg(&dir);
        crate::util::run(&mut cmd)
    };
    // The default is what a publishing pipeline does: a config drive.
    let ran = boot_check("images.sunraku", &[]);
    ran.expect_code(0)
        .stderr_has("metadata: config-drive")
        .stderr_has("  firmware:    SeaBIOS (bios), ")
        .stderr_has("  accelerator: tcg, as configured")
        .stderr_has("  metadata:    read from the config drive ")
        .stderr_has(": host name heph-")
        .stderr_has("  image:       unchanged, sha256 ");
    for debug in ["Firmware {", "Some(", "Bios", "name: \""] {
        assert!(!ran.stderr.contains(debug), "{debug:?} in\n{ran}");
    }
    // Without metadata the tiny disk's marker is enough, and the output says no drive was used.
    boot_check("tiny.sunraku", &["--metadata", "none"])
        .expect_code(0)
        .stderr_has("  metadata:    none attached (--metadata none)")
        .stderr_has("  console:     \"HEPHAESTUS-BOOT-OK sunraku\"");
    // A marker cannot replace the host name check.
    boot_check("tiny.sunraku", &["--marker", "x"])
        .expect_code(2)
        .stderr_has("--marker applies only with --metadata none");
}
