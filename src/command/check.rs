//! `pipeline check`: the invariants of a cloud's image families, and with `--repair` the safe
//! fixes (see `lifecycle::check`).

use super::output::say;
use crate::cli::CheckArgs;
use anyhow::Context as _;
use hephaestus::error::Exit;
use hephaestus::lifecycle::check::{self, Finding};
use serde_json::json;
use std::path::Path;

/// Run `pipeline check`.
pub fn run(root: &Path, args: &CheckArgs) -> anyhow::Result<Exit> {
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    let glance = runtime.block_on(super::run::connect(args.cloud.as_deref()))?;
    let cloud = glance.cloud().to_string();
    let _lock = if args.repair {
        Some(super::lock_cloud(root, &args.lock, &cloud)?)
    } else {
        None
    };
    let found = runtime
        .block_on(check::check(&glance, &args.profiles, args.name.as_deref()))
        .with_context(|| format!("cannot check cloud {cloud}"))?;
    let (changes, left): (Vec<check::Change>, Vec<Finding>) = if args.repair {
        let changes = runtime.block_on(check::repair(&glance, &found));
        // What is left is what a fresh look finds, not what the repairs meant to do.
        let left = runtime
            .block_on(check::check(&glance, &args.profiles, args.name.as_deref()))
            .with_context(|| format!("cannot check cloud {cloud} after repairing"))?;
        (changes, left)
    } else {
        (Vec::new(), found.clone())
    };
    for f in &found {
        say!(
            "{} · {}: {}{}",
            f.profile,
            f.name,
            f.problem,
            match (&f.repair, args.repair) {
                (Some(r), false) => format!(" (--repair would {r})"),
                (None, _) => " (needs a person)".to_string(),
                _ => String::new(),
            }
        );
    }
    for c in &changes {
        match &c.error {
            None => say!("repaired: {}", c.repair),
            Some(e) => say!("FAILED to {}: {e}", c.repair),
        }
    }
    say!(
        "cloud {cloud}: {}",
        if left.is_empty() {
            "every image family is sound".to_string()
        } else {
            format!("{} problem(s) left", left.len())
        }
    );
    if args.json {
        super::print_json(&json!({
            "cloud": cloud,
            "ok": left.is_empty(),
            "found": found,
            "changes": changes,
            "left": left,
        }))?;
    }
    Ok(if left.is_empty() {
        Exit::Success
    } else {
        Exit::Failed
    })
}
