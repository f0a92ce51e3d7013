//! `pipeline boot-check FILE --profile P`: the boot-check stage on any local image file.

use super::output::say;
use crate::cli::BootCheckArgs;
use anyhow::Context as _;
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
        skip: None,
    };
    let opts = boot_options(&options, &profile.name, None)
        .map_err(|e| super::UsageError(format!("--marker: {e}")))?;
    let run_dir = super::run_dir(&project.root, args.run_dir.as_deref())?
        .base()
        .join("boot-check")
        .join(&profile.name);
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    say!(
        "booting {} under {} firmware (profile `{}`)…",
        args.file.display(),
        profile.boot,
        profile.name
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
    say!(
        "ok: booted in {:.1}s under {:?} ({}: {}); marker line {:?}; image unchanged (sha256 {})",
        report.seconds,
        report.firmware,
        report.accel_used,
        report.accel_reason,
        report.matched_line,
        report.sha256
    );
    say!("serial log: {}", report.serial_log.display());
    Ok(Exit::Success)
}
