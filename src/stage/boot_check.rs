//! `boot-check`: boots the exact verified image under QEMU with the firmware it is tagged with
//! (OVMF for UEFI, SeaBIOS for BIOS) and passes on the boot marker (see `boot`).

use super::{slot, Artifact, Context, Kind, Outcome, Slot};
use crate::boot::{self, Accel, BootOptions, Metadata};
use serde::Deserialize;
use std::time::Duration;

/// Options of the `boot-check` stage.
#[derive(Debug, Default, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "BootCheckOptions")]
pub struct Options {
    /// Seconds before the boot counts as hung (default 300 under TCG, 60 under KVM).
    #[serde(default)]
    pub timeout: Option<u64>,
    /// Regex a serial-console line must match; `{profile}` is replaced (default: a `login:`
    /// prompt or `HEPHAESTUS-BOOT-OK <profile>` at the start of a line). Only with
    /// `metadata: none`: a config drive's check has its own marker.
    #[serde(default)]
    pub marker: Option<String>,
    /// `config-drive`: attach a fresh config drive and require `<its random host name> login:`;
    /// `none`: boot without metadata. Validation fills it in: `config-drive` in a pipeline that
    /// uploads, else `none`.
    #[serde(default)]
    pub metadata: Option<Metadata>,
    /// Guest memory in MiB (default 1024).
    #[serde(default)]
    pub memory: Option<u32>,
    /// `tcg`, `kvm` or `auto` (default: KVM only when a probe boot under KVM works).
    #[serde(default)]
    pub accel: Option<Accel>,
    /// Do not boot, for this reason: the only way a publishing pipeline may go without a
    /// boot proof, shown in the plan and in the report.
    #[serde(default)]
    #[schemars(pattern(r"\S"))]
    pub skip: Option<String>,
}

/// What `boot-check` established.
#[derive(Debug, Clone)]
pub enum Booted {
    /// The image booted.
    Proven(Box<boot::BootReport>),
    /// The pipeline said not to boot it, and why.
    Skipped(String),
    /// An earlier run proved this very store path under the same firmware, marker and QEMU
    /// (see `boot::cache`).
    Cached(Box<boot::cache::Proof>),
}

/// Boot options from the stage's options for `profile`.
pub fn boot_options(
    options: &Options,
    profile: &str,
    expected_sha256: Option<String>,
) -> Result<BootOptions, boot::Error> {
    let marker = boot::marker_for(options.marker.as_deref(), profile)?;
    let mut opts = BootOptions::new(marker);
    opts.timeout = options.timeout.map(Duration::from_secs);
    if let Some(m) = options.memory {
        opts.memory_mib = m;
    }
    if let Some(a) = options.accel {
        opts.accel = a;
    }
    opts.metadata = options.metadata.unwrap_or(Metadata::None);
    opts.expected_sha256 = expected_sha256;
    Ok(opts)
}

/// The stage: fills `booted`.
pub async fn run(
    options: &Options,
    artifact: &mut Artifact,
    ctx: &Context<'_>,
) -> Result<Outcome, super::Error> {
    if let Some(reason) = &options.skip {
        artifact.booted = Some(Booted::Skipped(reason.clone()));
        return Ok(Outcome::Skipped(format!(
            "not booted, on purpose: {reason}"
        )));
    }
    let verified = slot(&artifact.verified, Kind::BootCheck, Slot::Verified)?;
    let properties = slot(&artifact.properties, Kind::BootCheck, Slot::Properties)?;
    // Boot with the firmware the image will be tagged with, whatever else says.
    let boot = properties.boot;
    let profile = &artifact.profile.name;
    let sha256 = artifact.digests.as_ref().map(|d| d.sha256.clone());
    let opts = boot_options(options, profile, sha256)?;
    let built = slot(&artifact.build, Kind::BootCheck, Slot::Build)?;
    let cache = ctx.boot_cache;
    let key = match cache {
        Some(_) => Some(boot::cache::Key {
            store_path: built.store_path.as_str().to_owned(),
            nar_hash: built.nar_hash.to_string(),
            boot,
            firmware: {
                let firmware = boot::qemu::find_firmware(boot, &opts.qemu)?;
                boot::cache::firmware_id(firmware.name, firmware.code.as_deref()).await
            },
            marker: opts.marker.as_str().to_owned(),
            qemu: boot::cache::qemu_version(&opts.qemu).await,
            // A proof without metadata says nothing about reading a config drive.
            check: opts.metadata.name().to_owned(),
        }),
        None => None,
    };
    if let (Some(dir), Some(key)) = (cache, &key) {
        let (dir, wanted) = (dir.to_path_buf(), key.clone());
        let found = tokio::task::spawn_blocking(move || boot::cache::lookup(&dir, &wanted))
            .await
            .ok()
            .flatten();
        if let Some(proof) = found {
            let note = format!(
                "cached: {} booted under {boot} ({}) at {}, matching {:?}; not booted again",
                key.store_path, proof.accel, proof.proven_at, proof.matched_line
            );
            artifact.booted = Some(Booted::Cached(Box::new(proof)));
            return Ok(Outcome::Cached(note));
        }
    }
    let dir = ctx.run_dir.join("boot").join(profile);
    let report = boot::boot_check(&verified.file, boot, &opts, &dir).await?;
    let metadata = match &report.config_drive {
        Some(d) => format!(
            "read its config drive (host name {}, instance {})",
            d.identity.hostname, d.identity.uuid
        ),
        None => "no metadata (metadata: none)".into(),
    };
    if let (Some(dir), Some(key)) = (cache, key) {
        let proof = boot::cache::Proof {
            key,
            proven_at: time::OffsetDateTime::now_utc()
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default(),
            seconds: report.seconds,
            accel: report.accel_used.to_string(),
            matched_line: report.matched_line.clone(),
        };
        let at = dir.to_path_buf();
        match tokio::task::spawn_blocking(move || boot::cache::remember(&at, &proof)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(
                "{profile}: cannot remember the boot proof in {}: {e}",
                dir.display()
            ),
            Err(e) => tracing::warn!("{profile}: the boot-proof writer stopped: {e}"),
        }
    }
    let note = format!(
        "booted under {} ({}) in {:.1}s: {:?}; {metadata}; serial log {}",
        report.firmware,
        report.accel_used,
        report.seconds,
        report.matched_line,
        report.serial_log.display()
    );
    artifact.booted = Some(Booted::Proven(Box::new(report)));
    Ok(Outcome::Done(Some(note)))
}
