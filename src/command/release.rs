//! `pipeline release`: lift the hold a rollback put on a profile's rolled-back builds.

use super::output::say;
use crate::cli::ReleaseArgs;
use anyhow::Context as _;
use hephaestus::error::Exit;
use hephaestus::lifecycle;
use serde_json::json;
use std::path::Path;

/// Run `pipeline release`.
pub fn run(root: &Path, args: &ReleaseArgs) -> anyhow::Result<Exit> {
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    let glance = runtime.block_on(super::run::connect(args.cloud.as_deref()))?;
    let cloud = glance.cloud().to_string();
    let _lock = super::lock_cloud(root, &args.lock, &cloud)?;
    let released = runtime
        .block_on(lifecycle::rollback::release(
            &glance,
            &args.profile,
            args.name
                .as_deref()
                .map(|n| lifecycle::stable_name(n, &args.profile))
                .as_deref(),
        ))
        .with_context(|| format!("cannot release `{}` in cloud {cloud}", args.profile))?;
    if released.is_empty() {
        say!(
            "{cloud}: `{}` has no rolled-back build: nothing is held",
            args.profile
        );
    }
    for g in &released {
        say!(
            "{cloud}: released {} ({}, generation {}): its build may be published again",
            g.id,
            g.name,
            g.generation
        );
    }
    if args.json {
        super::print_json(
            &json!({ "cloud": cloud, "profile": args.profile, "released": released }),
        )?;
    }
    Ok(Exit::Success)
}
