//! Finding QEMU's firmware, building the QEMU command line, and running one guest until its
//! serial console gives a verdict, the deadline passes or QEMU exits.

use super::serial::{self, Verdict, Watcher};
use super::{Accel, Error};
use crate::firmware::Boot;
use regex::Regex;
use serde::Serialize;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::LazyLock;
use std::time::{Duration, Instant};
use tokio::io::AsyncReadExt;
use tokio::sync::Semaphore;

/// The host's cores, shared by the guests of this process: under TCG each vCPU is a host thread
/// that keeps a core busy, and guests that together want more cores than there are slow each
/// other past their timeouts. A guest takes one permit per vCPU, so on 2 cores two 1-vCPU guests
/// boot side by side and a 2-vCPU guest boots alone; the others queue here.
static CORES: LazyLock<(Semaphore, u32)> = LazyLock::new(|| {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let cores = u32::try_from(cores).unwrap_or(u32::MAX).min(64);
    (Semaphore::new(cores as usize), cores)
});

/// How often the serial log is read while the guest runs.
const POLL: Duration = Duration::from_millis(100);
/// QEMU's message when KVM cannot run the guest (a CPU without vmx/svm behind /dev/kvm): the
/// guest is then paused for ever, so waiting for the deadline would only waste time.
const KVM_FAILURE: &str = "KVM internal error";

/// Where the firmware descriptors (QEMU's docs/interop/firmware.json) live, most specific
/// first; QEMU's own data directory next to its binary is added at run time (Nix, /usr/local).
const DESCRIPTOR_DIRS: &[&str] = &["/etc/qemu/firmware", "/usr/share/qemu/firmware"];
/// Debian's OVMF files when no descriptor names them: (code, vars template).
const OVMF_FALLBACK: &[(&str, &str)] = &[
    (
        "/usr/share/OVMF/OVMF_CODE_4M.fd",
        "/usr/share/OVMF/OVMF_VARS_4M.fd",
    ),
    (
        "/usr/share/OVMF/OVMF_CODE.fd",
        "/usr/share/OVMF/OVMF_VARS.fd",
    ),
];
/// SeaBIOS as packaged; QEMU finds its own copy when none of these exists.
const SEABIOS_PATHS: &[&str] = &[
    "/usr/share/seabios/bios-256k.bin",
    "/usr/share/qemu/bios-256k.bin",
];

/// The firmware a guest runs under.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Firmware {
    /// The firmware type checked (the value tagged as `hw_firmware_type`).
    pub boot: Boot,
    /// `OVMF` or `SeaBIOS`.
    pub name: &'static str,
    /// OVMF's code file, or SeaBIOS's ROM when found (else QEMU's built-in default).
    pub code: Option<PathBuf>,
    /// OVMF's variable-store template, copied afresh for every run.
    pub vars_template: Option<PathBuf>,
}

impl std::fmt::Display for Firmware {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} firmware ({}", self.boot, self.name)?;
        if let Some(code) = &self.code {
            write!(f, " {}", code.display())?;
        }
        f.write_str(")")
    }
}

impl Firmware {
    /// The firmware and its files in words, for people: `OVMF (uefi), code … , NVRAM
    /// template …` or `SeaBIOS (bios), ROM …`.
    pub fn describe(&self) -> String {
        let mut text = format!("{} ({})", self.name, self.boot);
        match (&self.code, self.boot) {
            (Some(code), Boot::Uefi) => text.push_str(&format!(", code {}", code.display())),
            (Some(rom), Boot::Bios) => text.push_str(&format!(", ROM {}", rom.display())),
            (None, _) => text.push_str(", QEMU's own copy"),
        }
        if let Some(vars) = &self.vars_template {
            text.push_str(&format!(
                ", NVRAM a fresh copy of {} per boot",
                vars.display()
            ));
        }
        text
    }
}

/// The part of a firmware descriptor this code reads.
#[derive(serde::Deserialize)]
struct Descriptor {
    #[serde(rename = "interface-types", default)]
    interface_types: Vec<String>,
    mapping: Mapping,
    #[serde(default)]
    targets: Vec<Target>,
    #[serde(default)]
    features: Vec<String>,
}

#[derive(serde::Deserialize)]
struct Mapping {
    #[serde(default)]
    device: String,
    executable: Option<FlashFile>,
    #[serde(rename = "nvram-template")]
    nvram_template: Option<FlashFile>,
}

#[derive(serde::Deserialize)]
struct FlashFile {
    filename: PathBuf,
    #[serde(default)]
    format: String,
}

#[derive(serde::Deserialize)]
struct Target {
    architecture: String,
    #[serde(default)]
    machines: Vec<String>,
}

/// Plain OVMF for q35 from a descriptor: UEFI, flash-mapped, raw, x86_64 on `pc-q35-*`, and
/// none of Secure Boot, SMM or enrolled keys (those need other machine options and refuse the
/// unsigned loaders that Nova's plain `hw_firmware_type=uefi` boots).
fn plain_ovmf(text: &str) -> Option<(PathBuf, PathBuf)> {
    let d: Descriptor = serde_json::from_str(text).ok()?;
    let ok = d.interface_types.iter().any(|t| t == "uefi")
        && d.mapping.device == "flash"
        && d.targets.iter().any(|t| {
            t.architecture == "x86_64" && t.machines.iter().any(|m| m.starts_with("pc-q35"))
        })
        && !d
            .features
            .iter()
            .any(|f| matches!(f.as_str(), "secure-boot" | "requires-smm" | "enrolled-keys"));
    let code = d.mapping.executable?;
    let vars = d.mapping.nvram_template?;
    let raw = |f: &FlashFile| f.format.is_empty() || f.format == "raw";
    (ok && raw(&code) && raw(&vars)).then_some((code.filename, vars.filename))
}

/// The program QEMU's data directory belongs to: `<prefix>/bin/qemu-…` → `<prefix>/share/qemu`.
fn qemu_share_dir(qemu: &Path) -> Option<PathBuf> {
    let exe = if qemu.components().count() > 1 {
        qemu.to_path_buf()
    } else {
        std::env::var_os("PATH")
            .map(|p| {
                std::env::split_paths(&p)
                    .map(|d| d.join(qemu))
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default()
            .into_iter()
            .find(|p| p.is_file())?
    };
    let exe = std::fs::canonicalize(exe).ok()?;
    Some(exe.parent()?.parent()?.join("share/qemu"))
}

/// Finds the firmware for `boot`: OVMF through QEMU's firmware descriptors (else Debian's
/// paths), SeaBIOS as packaged.
pub fn find_firmware(boot: Boot, qemu: &Path) -> Result<Firmware, Error> {
    match boot {
        Boot::Bios => Ok(Firmware {
            boot,
            name: "SeaBIOS",
            code: SEABIOS_PATHS
                .iter()
                .map(PathBuf::from)
                .find(|p| p.is_file()),
            vars_template: None,
        }),
        Boot::Uefi => {
            let mut dirs: Vec<PathBuf> = DESCRIPTOR_DIRS.iter().map(PathBuf::from).collect();
            if let Some(share) = qemu_share_dir(qemu) {
                dirs.push(share.join("firmware"));
            }
            let mut looked = Vec::new();
            for dir in &dirs {
                looked.push(format!("{}/*.json", dir.display()));
                let Ok(entries) = std::fs::read_dir(dir) else {
                    continue;
                };
                // Descriptors are ranked by their file names (firmware.json: "priority").
                let mut files: Vec<PathBuf> = entries
                    .filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| p.extension().is_some_and(|x| x == "json"))
                    .collect();
                files.sort();
                for file in files {
                    let Ok(text) = std::fs::read_to_string(&file) else {
                        continue;
                    };
                    if let Some((code, vars)) = plain_ovmf(&text) {
                        if code.is_file() && vars.is_file() {
                            return Ok(ovmf(code, vars));
                        }
                    }
                }
            }
            for (code, vars) in OVMF_FALLBACK {
                looked.push((*code).to_owned());
                if Path::new(code).is_file() && Path::new(vars).is_file() {
                    return Ok(ovmf(code.into(), vars.into()));
                }
            }
            Err(Error::OvmfMissing {
                looked: looked.join(", "),
            })
        }
    }
}

fn ovmf(code: PathBuf, vars: PathBuf) -> Firmware {
    Firmware {
        boot: Boot::Uefi,
        name: "OVMF",
        code: Some(code),
        vars_template: Some(vars),
    }
}

/// QEMU's option parser splits on commas; a literal comma in a value is written twice.
fn qemu_value(path: &Path) -> String {
    path.to_string_lossy().replace(',', ",,")
}

/// One guest to run.
pub struct Guest<'a> {
    /// The QEMU program.
    pub qemu: &'a Path,
    /// `Tcg` or `Kvm` (never `Auto` here).
    pub accel: Accel,
    /// The firmware.
    pub firmware: &'a Firmware,
    /// The disk and its format (`qcow2`, `raw`); `None` boots the firmware alone.
    pub disk: Option<(&'a Path, &'a str)>,
    /// Guest memory.
    pub memory_mib: u32,
    /// Virtual CPUs.
    pub cpus: u32,
    /// What passes.
    pub marker: &'a Regex,
    /// A login prompt that fails when it is not the marker (the guest ignored its metadata).
    pub other_login: Option<&'a Regex>,
    /// A config drive (ISO9660) attached as a read-only virtio disk.
    pub config_drive: Option<&'a Path>,
    /// Give up after this long.
    pub timeout: Duration,
    /// Where the serial log, QEMU's stderr and the NVRAM copy go.
    pub dir: &'a Path,
}

/// How a guest run ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Ending {
    /// The marker was printed on this line.
    Marker(String),
    /// A failure message was printed on this line.
    Failure(String),
    /// Another host's login prompt was printed on this line.
    OtherLogin(String),
    /// QEMU reported that KVM cannot run the guest.
    KvmFailure,
    /// Neither within the timeout.
    Timeout,
    /// QEMU exited on its own first.
    Exited(ExitStatus),
}

/// A finished run: the verdict and where its evidence is.
#[derive(Debug)]
pub struct Finished {
    /// How it ended.
    pub ending: Ending,
    /// Seconds from starting QEMU to the verdict.
    pub seconds: f64,
    /// QEMU's process id (gone by now).
    pub pid: Option<u32>,
    /// The serial console log.
    pub serial_log: PathBuf,
    /// QEMU's stderr.
    pub stderr_log: PathBuf,
    /// The command line, for messages.
    pub argv: String,
}

impl Finished {
    /// The last `n` lines of the serial log, and whether the guest's kernel reported stalled
    /// CPUs in it ([`serial::reports_stalls`]), from one read of the log.
    pub fn serial_tail(&self, n: usize) -> (Vec<String>, bool) {
        match std::fs::read(&self.serial_log) {
            Ok(log) => (serial::tail_lines(&log, n), serial::reports_stalls(&log)),
            Err(e) => (vec![format!("(cannot read the serial log: {e})")], false),
        }
    }

    /// The last `n` lines of QEMU's stderr.
    pub fn stderr_tail(&self, n: usize) -> Vec<String> {
        std::fs::read(&self.stderr_log)
            .map(|b| serial::tail_lines(&b, n))
            .unwrap_or_default()
    }
}

/// The QEMU arguments for `guest`; `vars` is the fresh NVRAM copy (uefi).
fn argv(guest: &Guest<'_>, serial_log: &Path, vars: Option<&Path>) -> Vec<OsString> {
    let mut a: Vec<String> = vec![
        "-accel".into(),
        match guest.accel {
            Accel::Kvm => "kvm".into(),
            _ => "tcg".into(),
        },
        "-m".into(),
        guest.memory_mib.to_string(),
        "-smp".into(),
        guest.cpus.to_string(),
        // Nothing but the serial console: no display, no monitor, and no NIC, because OVMF
        // tries PXE and HTTP boot on every NIC for minutes before it admits failure.
        "-display".into(),
        "none".into(),
        "-vga".into(),
        "none".into(),
        "-monitor".into(),
        "none".into(),
        "-nic".into(),
        "none".into(),
        // A reboot after a failure would start the boot all over; stop instead.
        "-no-reboot".into(),
        "-serial".into(),
        format!("file:{}", qemu_value(serial_log)),
    ];
    match guest.firmware.boot {
        Boot::Uefi => {
            a.extend(["-machine".into(), "q35".into()]);
            if let Some(code) = &guest.firmware.code {
                a.extend([
                    "-drive".into(),
                    format!(
                        "if=pflash,format=raw,unit=0,readonly=on,file={}",
                        qemu_value(code)
                    ),
                ]);
            }
            if let Some(vars) = vars {
                a.extend([
                    "-drive".into(),
                    format!("if=pflash,format=raw,unit=1,file={}", qemu_value(vars)),
                ]);
            }
        }
        Boot::Bios => {
            // graphics=off makes SeaBIOS mirror its console on COM1, so "No bootable device"
            // reaches the log.
            a.extend(["-machine".into(), "pc,graphics=off".into()]);
            if let Some(rom) = &guest.firmware.code {
                a.extend(["-bios".into(), qemu_value(rom)]);
            }
        }
    }
    if let Some((disk, format)) = guest.disk {
        // snapshot=on: writes go to a throw-away overlay; the image (perhaps a store path,
        // writable by root all the same) is never modified. bootindex=0 + strict=on: the
        // firmware tries this disk only, with no detour through other devices.
        a.extend([
            "-drive".into(),
            format!(
                "file={},format={format},if=none,id=disk0,snapshot=on",
                qemu_value(disk)
            ),
            "-device".into(),
            "virtio-blk-pci,drive=disk0,bootindex=0".into(),
        ]);
    }
    if let Some(iso) = guest.config_drive {
        // As Nova attaches a config drive: a read-only disk on the virtio bus. No bootindex, so
        // with strict=on the firmware never tries to boot from it.
        a.extend([
            "-drive".into(),
            format!(
                "file={},format=raw,if=none,id=config,readonly=on",
                qemu_value(iso)
            ),
            "-device".into(),
            "virtio-blk-pci,drive=config".into(),
        ]);
    }
    a.extend(["-boot".into(), "strict=on".into()]);
    a.into_iter().map(OsString::from).collect()
}

/// `program arg…` with shell quoting where needed, for error messages.
fn show_argv(program: &Path, args: &[OsString]) -> String {
    std::iter::once(program.as_os_str())
        .chain(args.iter().map(OsString::as_os_str))
        .map(|a| {
            let s = a.to_string_lossy();
            if !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_./:=,+@%".contains(c))
            {
                s.into_owned()
            } else {
                format!("'{}'", s.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::RunDir {
        path: path.to_path_buf(),
        source,
    }
}

/// Runs `guest` until a verdict, and always stops QEMU by its pid before returning. Guests
/// share the host's cores, one per vCPU (the wait for a turn is not counted in `seconds`).
pub async fn run(guest: &Guest<'_>) -> Result<Finished, Error> {
    let (cores, total) = &*CORES;
    // Never closed, so acquiring cannot fail; a closed semaphore would only mean no queueing.
    let _turn = cores.acquire_many(guest.cpus.clamp(1, *total)).await.ok();
    let dir = guest.dir;
    std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    let serial_log = dir.join("serial.log");
    let stderr_log = dir.join("qemu.stderr");
    // Created (emptied) here so it can be read from the start; QEMU writes the same file.
    std::fs::File::create(&serial_log).map_err(io_err(&serial_log))?;
    let stderr_file = std::fs::File::create(&stderr_log).map_err(io_err(&stderr_log))?;
    let vars = match &guest.firmware.vars_template {
        Some(template) => {
            // A fresh NVRAM every run, as Nova gives a new instance: no boot entries, so only
            // the removable-media path \EFI\BOOT\BOOTX64.EFI can boot.
            let vars = dir.join("OVMF_VARS.fd");
            std::fs::copy(template, &vars).map_err(io_err(&vars))?;
            let mut perm = std::fs::metadata(&vars)
                .map_err(io_err(&vars))?
                .permissions();
            #[allow(clippy::permissions_set_readonly_false)]
            perm.set_readonly(false);
            std::fs::set_permissions(&vars, perm).map_err(io_err(&vars))?;
            Some(vars)
        }
        None => None,
    };
    let args = argv(guest, &serial_log, vars.as_deref());
    let shown = show_argv(guest.qemu, &args);
    tracing::debug!(argv = %shown, "starting QEMU");

    let mut cmd = tokio::process::Command::new(guest.qemu);
    cmd.args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(stderr_file))
        // The snapshot overlay is a temporary file; keep it inside the run directory.
        .env("TMPDIR", dir)
        // Dropping the future (a cancelled run) must not leave QEMU behind.
        .kill_on_drop(true);
    let start = Instant::now();
    let mut child = cmd.spawn().map_err(|source| {
        if source.kind() == std::io::ErrorKind::NotFound {
            Error::QemuMissing {
                program: guest.qemu.to_path_buf(),
                source,
            }
        } else {
            Error::Spawn {
                argv: shown.clone(),
                source,
            }
        }
    })?;
    let pid = child.id();

    let log_err = |source| Error::SerialLog {
        path: serial_log.clone(),
        source,
    };
    let mut log = tokio::fs::File::open(&serial_log).await.map_err(log_err)?;
    let mut watcher = Watcher::new(guest.marker.clone());
    if let Some(other) = guest.other_login {
        watcher = watcher.failing_on_other(other.clone());
    }
    let mut buf = Vec::new();
    let verdict = |v: Verdict| match v {
        Verdict::Marker(l) => Ending::Marker(l),
        Verdict::Failure(l) => Ending::Failure(l),
        Verdict::Other(l) => Ending::OtherLogin(l),
    };
    let ending = loop {
        buf.clear();
        log.read_to_end(&mut buf).await.map_err(log_err)?;
        if let Some(v) = watcher.feed(&buf) {
            break verdict(v);
        }
        match child.try_wait() {
            Ok(Some(status)) => {
                // The guest may have printed its last words just before powering off.
                buf.clear();
                log.read_to_end(&mut buf).await.map_err(log_err)?;
                match watcher.feed(&buf) {
                    Some(v) => break verdict(v),
                    None => break Ending::Exited(status),
                }
            }
            Ok(None) => {}
            Err(source) => {
                return Err(Error::Wait {
                    argv: shown,
                    source,
                })
            }
        }
        if guest.accel == Accel::Kvm
            && std::fs::read(&stderr_log)
                .is_ok_and(|b| String::from_utf8_lossy(&b).contains(KVM_FAILURE))
        {
            break Ending::KvmFailure;
        }
        if start.elapsed() >= guest.timeout {
            break Ending::Timeout;
        }
        tokio::time::sleep(POLL).await;
    };
    let seconds = start.elapsed().as_secs_f64();
    // Stop QEMU by its pid whatever happened (SIGKILL: the overlay is thrown away anyway),
    // and reap it so no zombie or running guest is left.
    if !matches!(ending, Ending::Exited(_)) {
        if let Err(e) = child.start_kill() {
            tracing::debug!(error = %e, "QEMU had already exited");
        }
    }
    if let Err(source) = child.wait().await {
        return Err(Error::Wait {
            argv: shown,
            source,
        });
    }
    Ok(Finished {
        ending,
        seconds,
        pid,
        serial_log,
        stderr_log,
        argv: shown,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debian_descriptor_gives_plain_ovmf_and_secure_ones_are_skipped() {
        let plain = r#"{"interface-types":["uefi"],"mapping":{"device":"flash",
            "executable":{"filename":"/x/CODE.fd","format":"raw"},
            "nvram-template":{"filename":"/x/VARS.fd","format":"raw"}},
            "targets":[{"architecture":"x86_64","machines":["pc-i440fx-*","pc-q35-*"]}],
            "features":["acpi-s3","verbose-dynamic"]}"#;
        assert_eq!(
            plain_ovmf(plain),
            Some(("/x/CODE.fd".into(), "/x/VARS.fd".into()))
        );
        let secure = plain.replace("\"acpi-s3\"", "\"secure-boot\",\"requires-smm\"");
        assert_eq!(plain_ovmf(&secure), None);
        let qcow = plain.replace("\"format\":\"raw\"", "\"format\":\"qcow2\"");
        assert_eq!(plain_ovmf(&qcow), None);
        assert_eq!(plain_ovmf("not json"), None);
    }

    #[test]
    fn argv_has_the_safety_options() {
        let fw = ovmf("/fw/CODE,1.fd".into(), "/fw/VARS.fd".into());
        let marker = Regex::new("x").unwrap();
        let guest = Guest {
            qemu: Path::new("qemu-system-x86_64"),
            accel: Accel::Tcg,
            firmware: &fw,
            disk: Some((Path::new("/img/a.qcow2"), "qcow2")),
            memory_mib: 512,
            cpus: 1,
            marker: &marker,
            other_login: None,
            config_drive: Some(Path::new("/run/config-drive.iso")),
            timeout: Duration::from_secs(1),
            dir: Path::new("/run"),
        };
        let a = argv(
            &guest,
            Path::new("/run/serial.log"),
            Some(Path::new("/run/V.fd")),
        );
        let shown = show_argv(guest.qemu, &a);
        for want in [
            "-accel tcg",
            "-machine q35",
            "-nic none",
            "-no-reboot",
            "-display none",
            "-monitor none",
            "readonly=on,file=/fw/CODE,,1.fd",
            "if=pflash,format=raw,unit=1,file=/run/V.fd",
            "file=/img/a.qcow2,format=qcow2,if=none,id=disk0,snapshot=on",
            "bootindex=0",
            "-boot strict=on",
            "-serial file:/run/serial.log",
            "file=/run/config-drive.iso,format=raw,if=none,id=config,readonly=on \
             -device virtio-blk-pci,drive=config",
        ] {
            assert!(shown.contains(want), "{want} missing from {shown}");
        }
        let bios = Firmware {
            boot: Boot::Bios,
            name: "SeaBIOS",
            code: None,
            vars_template: None,
        };
        let guest = Guest {
            firmware: &bios,
            ..guest
        };
        let shown = show_argv(guest.qemu, &argv(&guest, Path::new("/s"), None));
        assert!(shown.contains("-machine pc,graphics=off"), "{shown}");
        assert!(!shown.contains("pflash"), "{shown}");
    }

    #[test]
    fn firmware_in_words_names_the_files() {
        let fw = ovmf("/fw/CODE.fd".into(), "/fw/VARS.fd".into());
        assert_eq!(
            fw.describe(),
            "OVMF (uefi), code /fw/CODE.fd, NVRAM a fresh copy of /fw/VARS.fd per boot"
        );
        let bios = Firmware {
            boot: Boot::Bios,
            name: "SeaBIOS",
            code: None,
            vars_template: None,
        };
        assert_eq!(bios.describe(), "SeaBIOS (bios), QEMU's own copy");
    }

    #[test]
    fn argv_display_quotes_spaces() {
        let shown = show_argv(Path::new("q"), &["a b".into(), "it's".into()]);
        assert_eq!(shown, r"q 'a b' 'it'\''s'");
    }
}
