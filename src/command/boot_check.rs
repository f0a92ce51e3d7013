//! `pipeline boot-check FILE --profile P`: the boot-check stage on any local image file.

use super::output::say;
use crate::cli::BootCheckArgs;
use anyhow::Context as _;
use hephaestus::boot::Metadata;
use hephaestus::error::Exit;
use hephaestus::stage::boot_check::{boot_options, Options};
use std::path::Path;

/// Run `pipeline boot-check`.
pub fn run(root: &Path, args: &BootCheckArgs) -> anyhow::Result<Exit> {
    let project = super::load_project(root)?;
    let profile = super::profile(&project, &args.profile)?;
    if !args.file.is_file() {
        return Err(super::UsageError(format!("{}: no such file", args.file.display())).into());
    }
    let options = Options {
        timeout: args.timeout,
        marker: args.marker.clone(),
        memory: args.memory,
        accel: args.accel,
        metadata: Some(args.metadata),
        skip: None,
    };
    if args.marker.is_some() && args.metadata == Metadata::ConfigDrive {
        return Err(super::UsageError(
            "--marker applies only with --metadata none: with a config drive the marker is \
             `<the drive's host name> login:`"
                .into(),
        )
        .into());
    }
    let opts = boot_options(&options, &profile.name, None)
        .map_err(|e| super::UsageError(format!("--marker: {e}")))?;
    let run_dir = super::run_dir(&project.root, args.run_dir.as_deref())?
        .base()
        .join("boot-check")
        .join(&profile.name);
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    say!(
        "booting {} under {} firmware (profile `{}`); metadata: {}: it {}…",
        args.file.display(),
        profile.boot,
        profile.name,
        args.metadata,
        args.metadata.describe()
    );
    let report = runtime
        .block_on(hephaestus::boot::boot_check(
            &args.file,
            profile.boot,
            &opts,
            &run_dir,
        ))
        .with_context(|| format!("{} did not boot as `{}`", args.file.display(), profile.name))?;
    if args.json {
        super::print_json(&report)?;
    }
    say!("ok: booted in {:.1} s", report.seconds);
    say!("  firmware:    {}", report.firmware.describe());
    say!(
        "  accelerator: {}, {}",
        report.accel_used,
        accel_in_words(&report.accel_reason)
    );
    match &report.config_drive {
        Some(d) => say!(
            "  metadata:    read from the config drive {}: host name {}, instance {}",
            d.iso.display(),
            d.identity.hostname,
            d.identity.uuid
        ),
        None => say!("  metadata:    none attached (--metadata none)"),
    }
    say!("  console:     {:?}", report.matched_line);
    say!("  image:       unchanged, sha256 {}", report.sha256);
    say!("  serial log:  {}", report.serial_log.display());
    Ok(Exit::Success)
}

/// The accelerator's reason without the accelerator's name in front (`tcg: /dev/kvm: …`), which
/// the line already shows.
fn accel_in_words(reason: &str) -> &str {
    reason
        .strip_prefix("tcg: ")
        .or_else(|| reason.strip_prefix("kvm: "))
        .or_else(|| reason.strip_prefix("tcg "))
        .or_else(|| reason.strip_prefix("kvm "))
        .unwrap_or(reason)
}
