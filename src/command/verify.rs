//! `pipeline verify FILE --profile P`: the verify stage on any local image file.

use super::output::say;
use crate::cli::VerifyArgs;
use anyhow::Context as _;
use hephaestus::error::Exit;
use hephaestus::stage::verify;
use std::path::Path;

/// Run `pipeline verify`.
pub fn run(root: &Path, args: &VerifyArgs) -> anyhow::Result<Exit> {
    let project = super::load_project(root)?;
    let profile = super::profile(&project, &args.profile)?;
    if !args.file.is_file() {
        return Err(super::UsageError(format!("{}: no such file", args.file.display())).into());
    }
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    // A refused image is exit code 1 (the image failed), not 2: the command line was fine.
    let verified = runtime
        .block_on(verify::verify_path(&args.file, profile.boot))
        .map_err(|e| {
            anyhow::Error::new(e).context(format!(
                "{} is not fit to publish as `{}` ({})",
                args.file.display(),
                profile.name,
                profile.boot
            ))
        })?;
    if args.json {
        super::print_json(&verified)?;
    }
    say!(
        "{}: ok for `{}` ({})",
        args.file.display(),
        profile.name,
        profile.boot
    );
    say!(
        "  qcow2 v{}, virtual size {} bytes, cluster size {} bytes{}",
        verified.qcow2.version,
        verified.qcow2.virtual_size,
        verified.qcow2.cluster_size,
        if verified.qcow2.compressed {
            ", compressed clusters"
        } else {
            ""
        }
    );
    say!("  firmware: {}", verified.firmware_evidence);
    say!(
        "  store: {}",
        if verified.nar_checked {
            "NAR hash of the store output matches Nix's registered narHash"
        } else {
            "not in the Nix store (NAR check not applicable)"
        }
    );
    // `verify_path` reads every byte, so the digests are always there.
    if let Some(d) = &verified.digests {
        say!("  size   {}", d.size);
        say!("  md5    {}", d.md5);
        say!("  sha256 {}", d.sha256);
        say!("  sha512 {}", d.sha512);
    }
    Ok(Exit::Success)
}
