//! Boot proof: boots the exact image under QEMU with the firmware it will be tagged with, and
//! passes only when the guest prints a marker on its serial console. The only code that runs
//! QEMU; it finds firmware and runs the guest, and leaves reading disks to `image`.
//!
//! # Public API
//! - [`boot_check`]`(image, boot, &`[`BootOptions`]`, run_dir).await -> Result<`[`BootReport`]`, Error>`:
//!   runs the static pre-check ([`crate::image::bootable::precheck`]) first (unless
//!   [`BootOptions::precheck`] is off), takes the image's sha256, boots it, and checks the
//!   sha256 again afterwards.
//!
//! # What QEMU is asked to do, and why (measured on Debian 12, 2 cores, no usable KVM)
//! - uefi: OVMF (from QEMU's firmware descriptors, the plain non-Secure-Boot build) on
//!   `-machine q35`, with a fresh copy of the NVRAM template per run: like a new Nova
//!   instance it has no boot entries, so only the removable path `\EFI\BOOT\BOOTX64.EFI` boots.
//! - bios: SeaBIOS on `-machine pc,graphics=off` (without `graphics=off` SeaBIOS says nothing
//!   on the serial port, not even "No bootable device").
//! - The disk is opened with `snapshot=on` (the image must not change; root could write a
//!   store path), `bootindex=0 -boot strict=on`, and `-nic none`: with a NIC, OVMF tries PXE
//!   and HTTP boot for minutes before showing a failure.
//! - The result is read from the serial log only: QEMU's exit code is 0 after a power-off, a
//!   panic under `-no-reboot` and a SIGTERM alike. Pass on the marker; fail at once on the
//!   firmware's own failure messages ([`serial::FAILURE_PATTERNS`]: no bootable device, the
//!   UEFI shell, Access Denied, `grub rescue>`, kernel panic, emergency mode); fail when QEMU
//!   exits without the marker or at the timeout. QEMU is always killed by its pid and reaped.
//! - Markers get echoed: the UEFI shell echoes commands and the kernel logs its command line,
//!   so a marker must be text the guest computes (the fixtures print `HEPHAESTUS-BOOT-OK
//!   <profile>` from XOR-ed bytes or GRUB variables) or a `login:` prompt at a line start.
//!
//! # The metadata check ([`Metadata::ConfigDrive`])
//! Booting is not enough on OpenStack: an image must also read its metadata (host name, SSH
//! key, user-data), or it comes up as `localhost` with no way in. With a config drive, each boot
//! gets a fresh one ([`config_drive`]) with a random host name, attached as Nova attaches it:
//! a read-only disk on the virtio bus, which both machine types (`pc`, `q35`) have, so no
//! cdrom (IDE on `pc`, SATA on `q35`) is needed. The marker is then `<that host name> login:`
//! and nothing else: a prompt for any other host (`localhost login:`, `nixos login:`) means
//! the image booted and ignored its metadata, and fails at once ([`Error::MetadataIgnored`]).
//!
//! # Timings (TCG, 2 host cores)
//! OVMF takes about 4.3 s to initialise: a fixture's GRUB prints its marker after 4.5–5.5 s;
//! SeaBIOS reaches the MBR in 0.2 s. A systemd Debian reached multi-user in about 35 s; real
//! NixOS images are expected at 45–120 s to their `login:` prompt, hence the 300 s default
//! timeout under TCG (60 s under KVM).
//!
//! # The image digest
//! The sha256 before the boot is [`BootOptions::expected_sha256`] when the caller already has
//! it (a full verify computed it in its single read), else it is computed here; the sha256
//! after the boot is always computed. In a publishing pipeline verify leaves the digests to
//! the upload, so a boot check that runs reads the image twice more (about 5–10 s each for a
//! 2–3 GB NixOS image, and none on a re-run whose proof is cached) against the one thing that
//! must never happen: publishing bytes that a boot modified. The upload's own read proves the
//! NAR hash again in any case.

pub mod accel;
pub mod cache;
pub mod config_drive;
pub mod qemu;
pub mod serial;

pub use qemu::Firmware;

use crate::firmware::Boot;
use crate::image::bootable::precheck;
use regex::Regex;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The marker for real NixOS images: the production profiles put a getty on ttyS0, whose
/// prompt is `<hostname> login:` at the start of a line.
pub const LOGIN_MARKER: &str = r"(?m)^\S+ login:";
/// Default timeout under TCG (NixOS is expected at 45–120 s).
pub const TCG_TIMEOUT: Duration = Duration::from_secs(300);
/// Default timeout under KVM.
pub const KVM_TIMEOUT: Duration = Duration::from_secs(60);
/// Default guest memory.
pub const DEFAULT_MEMORY_MIB: u32 = 1024;
/// Lines of the serial log quoted in errors.
const TAIL_LINES: usize = 12;

/// The marker the fixture flake's images print: `HEPHAESTUS-BOOT-OK <profile>`.
pub fn fixture_marker(profile: &str) -> Regex {
    // Escaped literal text always compiles.
    Regex::new(&regex::escape(&format!("HEPHAESTUS-BOOT-OK {profile}")))
        .expect("an escaped literal is a valid regex")
}

/// The default marker: the `login:` prompt of real NixOS images, or the line
/// `HEPHAESTUS-BOOT-OK <profile>` that an image may print to say it booted (the fixture images
/// do; a shell or kernel never starts a line with it by echoing). `{profile}` is replaced.
pub const DEFAULT_MARKER: &str = r"(?m)^(?:\S+ login:|HEPHAESTUS-BOOT-OK {profile}\b)";

/// The marker for `profile`: `template` (default [`DEFAULT_MARKER`]) with `{profile}` replaced
/// by the escaped profile name.
pub fn marker_for(template: Option<&str>, profile: &str) -> Result<Regex, Error> {
    let template = template.unwrap_or(DEFAULT_MARKER);
    parse_marker(&template.replace("{profile}", &regex::escape(profile)))
}

/// Parses a marker regex from configuration (the stage's `marker` option).
pub fn parse_marker(marker: &str) -> Result<Regex, Error> {
    Regex::new(marker).map_err(|e| Error::BadMarker {
        marker: marker.to_owned(),
        source: Box::new(e),
    })
}

/// Whether the boot also proves the image reads its OpenStack metadata.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Metadata {
    /// Attach a fresh config drive and require `<its random host name> login:`.
    ConfigDrive,
    /// No metadata: pass on the boot marker alone.
    None,
}

impl Metadata {
    /// The name used in pipelines and reports.
    pub fn name(self) -> &'static str {
        match self {
            Metadata::ConfigDrive => "config-drive",
            Metadata::None => "none",
        }
    }

    /// What the check proves, in words (for the plan, the report and the command).
    pub fn describe(self) -> &'static str {
        match self {
            Metadata::ConfigDrive => {
                "boots with a fresh config drive and must print `<its random host name> login:`"
            }
            Metadata::None => "boots without metadata and must print its boot marker",
        }
    }
}

impl std::str::FromStr for Metadata {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "config-drive" => Ok(Metadata::ConfigDrive),
            "none" => Ok(Metadata::None),
            _ => Err(format!(
                "unknown metadata {s:?} (expected config-drive or none)"
            )),
        }
    }
}

impl std::fmt::Display for Metadata {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The marker of a boot with a config drive: the login prompt of exactly this host.
pub fn hostname_marker(hostname: &str) -> Regex {
    Regex::new(&format!(r"(?m)^{} login:", regex::escape(hostname)))
        .expect("an escaped literal is a valid regex")
}

/// Which QEMU accelerator to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Accel {
    /// Software emulation: always works, slow.
    Tcg,
    /// Hardware virtualisation; fails when /dev/kvm cannot be opened.
    Kvm,
    /// KVM when a probe boot under KVM passes within seconds, else TCG.
    Auto,
}

impl std::str::FromStr for Accel {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "tcg" => Ok(Accel::Tcg),
            "kvm" => Ok(Accel::Kvm),
            "auto" => Ok(Accel::Auto),
            _ => Err(format!("unknown accel {s:?} (expected tcg, kvm or auto)")),
        }
    }
}

impl std::fmt::Display for Accel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Accel::Tcg => "tcg",
            Accel::Kvm => "kvm",
            Accel::Auto => "auto",
        })
    }
}

/// How to boot.
#[derive(Debug, Clone)]
pub struct BootOptions {
    /// Give up after this long; `None`: [`TCG_TIMEOUT`] or [`KVM_TIMEOUT`] by the accelerator.
    pub timeout: Option<Duration>,
    /// Passes when a console line matches (escapes and carriage returns stripped first); with
    /// [`Metadata::ConfigDrive`] the host name's login prompt is required instead.
    pub marker: Regex,
    /// Attach a config drive and require its host name, or not.
    pub metadata: Metadata,
    /// Guest memory in MiB.
    pub memory_mib: u32,
    /// Virtual CPUs (TCG runs one host thread per vCPU).
    pub cpus: u32,
    /// Accelerator.
    pub accel: Accel,
    /// Run [`precheck`] before booting (off only to watch a firmware fail on its own).
    pub precheck: bool,
    /// The image's sha256 (hex) as computed by a full verify; computed here when `None`.
    pub expected_sha256: Option<String>,
    /// The QEMU program (default `qemu-system-x86_64` from `PATH`).
    pub qemu: PathBuf,
}

impl BootOptions {
    /// Defaults with this marker.
    pub fn new(marker: Regex) -> Self {
        BootOptions {
            timeout: None,
            marker,
            metadata: Metadata::None,
            memory_mib: DEFAULT_MEMORY_MIB,
            cpus: 2,
            accel: Accel::Auto,
            precheck: true,
            expected_sha256: None,
            qemu: PathBuf::from("qemu-system-x86_64"),
        }
    }

    /// The timeout for the accelerator actually used.
    pub fn timeout_for(&self, accel: Accel) -> Duration {
        self.timeout.unwrap_or(match accel {
            Accel::Kvm => KVM_TIMEOUT,
            _ => TCG_TIMEOUT,
        })
    }
}

impl Default for BootOptions {
    /// The `login:` marker of real NixOS images.
    fn default() -> Self {
        BootOptions::new(Regex::new(LOGIN_MARKER).expect("LOGIN_MARKER is a valid regex"))
    }
}

/// A passed boot check.
#[derive(Debug, Clone, Serialize)]
pub struct BootReport {
    /// Seconds from starting QEMU to the marker (excluding the pre-check, the digests and the
    /// KVM probe).
    pub seconds: f64,
    /// `tcg` or `kvm`.
    pub accel_used: Accel,
    /// Why that accelerator (configured, no /dev/kvm, probe result).
    pub accel_reason: String,
    /// The firmware booted.
    pub firmware: Firmware,
    /// The serial console log, kept in the run directory.
    pub serial_log: PathBuf,
    /// The console line that matched the marker.
    pub matched_line: String,
    /// Which check ran.
    pub metadata: Metadata,
    /// The config drive attached and the identity it gave (with [`Metadata::ConfigDrive`]).
    pub config_drive: Option<config_drive::ConfigDrive>,
    /// The image's sha256, the same before and after the boot.
    pub sha256: String,
    /// QEMU's process id (stopped and reaped before this report exists).
    pub qemu_pid: Option<u32>,
}

/// What a failed boot left behind, for the error message and the report.
#[derive(Debug, Clone)]
pub struct Evidence {
    /// The image.
    pub image: PathBuf,
    /// The firmware.
    pub firmware: Firmware,
    /// The accelerator.
    pub accel: Accel,
    /// Seconds from starting QEMU to the verdict.
    pub seconds: f64,
    /// The serial log, kept in the run directory.
    pub serial_log: PathBuf,
    /// Its last lines, indented.
    pub tail: String,
}

/// Why a boot check failed or could not run.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// QEMU is not installed.
    #[error(
        "cannot run {} (QEMU): the boot check needs qemu-system-x86_64, OVMF and SeaBIOS; \
         install them with `make install-boot`", program.display()
    )]
    QemuMissing {
        /// The program.
        program: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// No OVMF build to boot uefi images with.
    #[error(
        "no OVMF firmware for booting uefi images (looked in {looked}); install it with \
         `make install-boot` (Debian package ovmf)"
    )]
    OvmfMissing {
        /// Where it was looked for.
        looked: String,
    },
    /// `accel: kvm` was asked for and KVM cannot be used.
    #[error("accel: kvm was configured but KVM cannot be used ({reason}); use accel: auto or tcg")]
    KvmUnavailable {
        /// Why.
        reason: String,
    },
    /// The marker is not a valid regex.
    #[error("the boot marker {marker:?} is not a valid regular expression")]
    BadMarker {
        /// The text given.
        marker: String,
        /// The parse error.
        #[source]
        source: Box<regex::Error>,
    },
    /// The run directory (or a file in it) could not be written.
    #[error("cannot prepare {} for the boot check", path.display())]
    RunDir {
        /// The path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// QEMU could not be started.
    #[error("cannot start QEMU: {argv}")]
    Spawn {
        /// The command line.
        argv: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Waiting for QEMU failed.
    #[error("cannot wait for QEMU ({argv})")]
    Wait {
        /// The command line.
        argv: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The serial log could not be read.
    #[error("cannot read the serial log {}", path.display())]
    SerialLog {
        /// The log.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The config drive could not be made.
    #[error(transparent)]
    ConfigDrive(#[from] config_drive::Error),
    /// The image booted, and its login prompt names another host than the config drive did.
    #[error(
        "{} booted under {} ({}) but ignored its metadata: the config drive {} named the host \
         {hostname:?}, and after {:.1} s the console showed {line:?} instead of \
         \"{hostname} login:\"; the image's metadata client (cloud-init's ConfigDrive \
         datasource) did not run or did not set the host name; serial log {}, last lines:\n{}",
        ev.image.display(), ev.firmware, ev.accel, drive.display(), ev.seconds,
        ev.serial_log.display(), ev.tail
    )]
    MetadataIgnored {
        /// The host name the config drive gave.
        hostname: String,
        /// The login prompt seen.
        line: String,
        /// The config drive.
        drive: PathBuf,
        /// Where and how.
        ev: Box<Evidence>,
    },
    /// The firmware, loader or kernel said it cannot boot.
    #[error(
        "{} does not boot under {} ({}): after {:.1} s the console showed {line:?}; serial log \
         {}, last lines:\n{}",
        ev.image.display(), ev.firmware, ev.accel, ev.seconds, ev.serial_log.display(), ev.tail
    )]
    BootFailed {
        /// The failure line.
        line: String,
        /// Where and how.
        ev: Box<Evidence>,
    },
    /// No marker before the deadline; QEMU was killed.
    #[error(
        "{} did not boot under {} ({}): no line matched the marker /{marker}/ within {:.0} s \
         (QEMU stopped); serial log {}, last lines:\n{}{}",
        ev.image.display(), ev.firmware, ev.accel, ev.seconds, ev.serial_log.display(), ev.tail,
        stall_hint(*stalled, ev.accel)
    )]
    Timeout {
        /// The marker.
        marker: String,
        /// Whether the guest's kernel reported stalled CPUs before the deadline.
        stalled: bool,
        /// Where and how.
        ev: Box<Evidence>,
    },
    /// QEMU exited before the marker.
    #[error(
        "{} did not boot under {} ({}): QEMU exited ({status}) after {:.1} s without a line \
         matching the marker /{marker}/; QEMU's stderr: {stderr}; serial log {}, last \
         lines:\n{}\ncommand: {argv}",
        ev.image.display(), ev.firmware, ev.accel, ev.seconds, ev.serial_log.display(), ev.tail
    )]
    Exited {
        /// QEMU's exit status.
        status: String,
        /// The marker.
        marker: String,
        /// The last lines of QEMU's stderr.
        stderr: String,
        /// QEMU's command line.
        argv: String,
        /// Where and how.
        ev: Box<Evidence>,
    },
    /// KVM was configured and cannot run the guest.
    #[error(
        "{} could not be booted under {} with accel: kvm: QEMU reported a KVM internal error \
         after {:.1} s (a CPU without working virtualisation?); use accel: auto or tcg; QEMU's \
         stderr: {stderr}",
        ev.image.display(), ev.firmware, ev.seconds
    )]
    KvmFailed {
        /// The last lines of QEMU's stderr.
        stderr: String,
        /// Where and how.
        ev: Box<Evidence>,
    },
    /// The image could not be hashed.
    #[error("cannot compute the sha256 of {}", path.display())]
    Digest {
        /// The image.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The image's bytes changed while it was booted: it must not be published.
    #[error(
        "{} changed during the boot check: sha256 {before} before, {after} after; do not publish \
         it, rebuild it",
        path.display()
    )]
    ImageChanged {
        /// The image.
        path: PathBuf,
        /// sha256 before.
        before: String,
        /// sha256 after.
        after: String,
    },
    /// A pre-check or digest task did not finish (panicked or was cancelled).
    #[error("the boot check's {what} task did not finish")]
    Task {
        /// Which task.
        what: &'static str,
        /// The cause.
        #[source]
        source: tokio::task::JoinError,
    },
    /// The static pre-check refused the image (nothing was booted).
    #[error(transparent)]
    Precheck(#[from] crate::image::bootable::Error),
}

/// sha256 of a file, read on a blocking thread.
async fn sha256_file(path: &Path) -> Result<String, Error> {
    let p = path.to_path_buf();
    let result = tokio::task::spawn_blocking(move || crate::image::digest::sha256_file(&p))
        .await
        .map_err(|source| Error::Task {
            what: "sha256",
            source,
        })?;
    result.map_err(|source| Error::Digest {
        path: path.to_path_buf(),
        source,
    })
}

fn indent(lines: &[String]) -> String {
    if lines.is_empty() {
        return "  | (nothing)".into();
    }
    lines
        .iter()
        .map(|l| format!("  | {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Boots `image` under the firmware for `boot` and waits for `opts.marker` on the serial
/// console. Pre-checks the image first (unless `opts.precheck` is false), keeps the serial log,
/// QEMU's stderr and the NVRAM copy in `run_dir`, stops QEMU by its pid whatever happens, and
/// fails if the image's sha256 changed.
pub async fn boot_check(
    image: &Path,
    boot: Boot,
    opts: &BootOptions,
    run_dir: &Path,
) -> Result<BootReport, Error> {
    if opts.precheck {
        let (img, b) = (image.to_path_buf(), boot);
        tokio::task::spawn_blocking(move || precheck(&img, b))
            .await
            .map_err(|source| Error::Task {
                what: "pre-check",
                source,
            })??;
    }
    let firmware = qemu::find_firmware(boot, &opts.qemu)?;
    let before = match &opts.expected_sha256 {
        Some(d) => d.to_ascii_lowercase(),
        None => sha256_file(image).await?,
    };
    let (accel, accel_reason) = accel::resolve(opts.accel, &opts.qemu, &firmware, run_dir).await?;
    let drive = match opts.metadata {
        Metadata::ConfigDrive => {
            std::fs::create_dir_all(run_dir).map_err(|source| Error::RunDir {
                path: run_dir.to_path_buf(),
                source,
            })?;
            Some(config_drive::build(run_dir).await?)
        }
        Metadata::None => None,
    };
    let marker = match &drive {
        Some(d) => hostname_marker(&d.identity.hostname),
        None => opts.marker.clone(),
    };
    // With a config drive, a prompt for any other host is the image ignoring its metadata.
    let other_login = drive
        .as_ref()
        .map(|_| Regex::new(LOGIN_MARKER).expect("LOGIN_MARKER is a valid regex"));
    let guest = qemu::Guest {
        qemu: &opts.qemu,
        accel,
        firmware: &firmware,
        disk: Some((image, "qcow2")),
        memory_mib: opts.memory_mib,
        cpus: opts.cpus,
        marker: &marker,
        other_login: other_login.as_ref(),
        config_drive: drive.as_ref().map(|d| d.iso.as_path()),
        timeout: opts.timeout_for(accel),
        dir: run_dir,
    };
    let done = qemu::run(&guest).await?;
    let after = sha256_file(image).await?;
    if after != before {
        return Err(Error::ImageChanged {
            path: image.to_path_buf(),
            before,
            after,
        });
    }
    let marker = marker.as_str().to_owned();
    let (tail, stalled) = done.serial_tail(TAIL_LINES);
    let ev = Box::new(Evidence {
        image: image.to_path_buf(),
        firmware: firmware.clone(),
        accel,
        seconds: done.seconds,
        serial_log: done.serial_log.clone(),
        tail: indent(&tail),
    });
    match done.ending.clone() {
        qemu::Ending::Marker(line) => Ok(BootReport {
            seconds: done.seconds,
            accel_used: accel,
            accel_reason,
            firmware,
            serial_log: done.serial_log,
            matched_line: line,
            metadata: opts.metadata,
            config_drive: drive,
            sha256: after,
            qemu_pid: done.pid,
        }),
        qemu::Ending::OtherLogin(line) => {
            let drive = drive.expect("another host's prompt is only watched for with a drive");
            Err(Error::MetadataIgnored {
                hostname: drive.identity.hostname,
                line,
                drive: drive.iso,
                ev,
            })
        }
        qemu::Ending::Failure(line) => Err(Error::BootFailed { line, ev }),
        qemu::Ending::Timeout => Err(Error::Timeout {
            marker,
            stalled,
            ev,
        }),
        qemu::Ending::Exited(status) => Err(Error::Exited {
            status: status.to_string(),
            marker,
            stderr: done.stderr_tail(5).join(" / "),
            argv: done.argv.clone(),
            ev,
        }),
        qemu::Ending::KvmFailure => Err(Error::KvmFailed {
            stderr: done.stderr_tail(5).join(" / "),
            ev,
        }),
    }
}

/// What a timeout after the guest's own stall reports means, and what to do about it.
fn stall_hint(stalled: bool, accel: Accel) -> &'static str {
    match (stalled, accel) {
        (false, _) => "",
        (true, Accel::Kvm) => {
            "\nthe guest's kernel reported stalled CPUs: the host did not let its vCPUs run; \
             check the host's load, then run the boot check again"
        }
        (true, _) => {
            "\nthe guest's kernel reported stalled CPUs: under software emulation a busy host \
             can starve a guest until it cannot boot in time, so this says more about the host's \
             load than about the image; run the boot check again on a quieter host, raise its \
             timeout (`timeout:`, `--timeout`), or boot under KVM (`accel: kvm`, `--accel kvm`)"
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_timeout_after_stalled_cpus_says_it_is_the_hosts_load() {
        let ev = |accel| {
            Box::new(Evidence {
                image: "/nix/store/x-image/nixos.qcow2".into(),
                firmware: qemu::Firmware {
                    boot: Boot::Uefi,
                    name: "OVMF",
                    code: None,
                    vars_template: None,
                },
                accel,
                seconds: 300.0,
                serial_log: "/run/boot/lucy/serial.log".into(),
                tail: "  | [  211.3] rcu: INFO: rcu_preempt detected stalls on CPUs/tasks:".into(),
            })
        };
        let timeout = |stalled, accel| {
            Error::Timeout {
                marker: "^heph-1 login:".into(),
                stalled,
                ev: ev(accel),
            }
            .to_string()
        };
        let tcg = timeout(true, Accel::Tcg);
        assert!(tcg.contains("within 300 s"), "{tcg}");
        assert!(tcg.contains("reported stalled CPUs"), "{tcg}");
        assert!(tcg.contains("`accel: kvm`"), "{tcg}");
        assert!(timeout(true, Accel::Kvm).contains("did not let its vCPUs run"));
        let plain = timeout(false, Accel::Tcg);
        assert!(!plain.contains("stalled"), "{plain}");
    }

    #[test]
    fn markers() {
        let m = fixture_marker("lucy");
        assert!(m.is_match("HEPHAESTUS-BOOT-OK lucy"));
        assert!(!m.is_match("HEPHAESTUS-BOOT-OK sunraku"));
        let login = BootOptions::default().marker;
        assert!(login.is_match("lucy login: "));
        assert!(!login.is_match("Welcome, please login: now"));
        assert!(parse_marker("(").is_err());
    }

    #[test]
    fn timeouts_default_by_accelerator() {
        let o = BootOptions::default();
        assert_eq!(o.timeout_for(Accel::Tcg), TCG_TIMEOUT);
        assert_eq!(o.timeout_for(Accel::Kvm), KVM_TIMEOUT);
        let o = BootOptions {
            timeout: Some(Duration::from_secs(7)),
            ..o
        };
        assert_eq!(o.timeout_for(Accel::Tcg), Duration::from_secs(7));
        assert_eq!("auto".parse::<Accel>(), Ok(Accel::Auto));
        assert!("xen".parse::<Accel>().is_err());
    }
}
