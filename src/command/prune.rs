//! `pipeline prune`: apply retention to the chosen profiles of a cloud, or with `--dry-run`
//! list what would be deleted and why.

use super::output::say;
use crate::cli::PruneArgs;
use anyhow::Context as _;
use hephaestus::error::Exit;
use hephaestus::lifecycle::{self, Decision, RetentionPlan, RetentionReport};
use serde_json::json;
use std::path::Path;

fn line(action: &str, d: &Decision) {
    let detail = d
        .detail
        .as_deref()
        .map(|x| format!(" — {x}"))
        .unwrap_or_default();
    say!(
        "  {action:<14} {}  {:<40} gen {:<22} {}{detail}",
        d.image.id,
        d.image.name,
        d.image.generation,
        d.reason
    );
}

fn show_plan(plan: &RetentionPlan) {
    say!(
        "{} · {}: {} kept, {} would be deleted",
        plan.profile,
        plan.name,
        plan.kept.len(),
        plan.delete.len()
    );
    plan.delete.iter().for_each(|d| line("would delete", d));
    plan.kept.iter().for_each(|d| line("keep", d));
}

fn show_report(report: &RetentionReport) {
    say!(
        "{} · {}: {} kept, {} deleted{}{}",
        report.profile,
        report.name,
        report.kept.len(),
        report.deleted.len(),
        if report.hidden.is_empty() {
            String::new()
        } else {
            format!(
                ", {} hidden (Glance refused the delete)",
                report.hidden.len()
            )
        },
        if report.failed.is_empty() {
            String::new()
        } else {
            format!(", {} FAILED", report.failed.len())
        },
    );
    report.failed.iter().for_each(|d| line("FAILED", d));
    report.hidden.iter().for_each(|d| line("hidden", d));
    report.deleted.iter().for_each(|d| line("deleted", d));
    report.kept.iter().for_each(|d| line("keep", d));
}

/// Run `pipeline prune`.
pub fn run(root: &Path, args: &PruneArgs) -> anyhow::Result<Exit> {
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    let glance = runtime.block_on(super::run::connect(args.cloud.as_deref()))?;
    let _lock = if args.dry_run {
        None
    } else {
        Some(super::lock_cloud(root, &args.lock, glance.cloud())?)
    };
    let cloud = glance.cloud().to_string();
    let profiles = if args.profiles.is_empty() {
        runtime
            .block_on(lifecycle::profiles_in_cloud(&glance))
            .context("cannot find the profiles to prune")?
    } else {
        args.profiles.clone()
    };
    say!(
        "cloud {cloud}: keeping {} generation(s) per profile and name{}",
        args.keep,
        if args.dry_run {
            " (dry run: nothing is deleted)"
        } else {
            ""
        }
    );
    let mut families = Vec::new();
    let mut ok = true;
    for profile in &profiles {
        let images = runtime
            .block_on(lifecycle::profile_images(&glance, profile))
            .with_context(|| format!("cannot prune profile `{profile}`"))?;
        let names = match &args.name {
            Some(n) => vec![n.replace("{profile}", profile)],
            None => lifecycle::families(&images),
        };
        if images.is_empty() {
            say!("{profile}: no images in cloud {cloud}");
        }
        for name in names {
            let plan = lifecycle::retention::decide(&images, profile, &name, args.keep);
            if plan.kept.is_empty() && plan.delete.is_empty() {
                say!("{profile} · {name}: no images of this name");
                continue;
            }
            if args.dry_run {
                show_plan(&plan);
                families.push(serde_json::to_value(&plan)?);
            } else {
                let report = runtime.block_on(lifecycle::execute_retention(&glance, &plan));
                show_report(&report);
                ok &= report.ok();
                families.push(serde_json::to_value(&report)?);
            }
        }
    }
    if args.json {
        super::print_json(&json!({
            "cloud": cloud,
            "keep": args.keep,
            "dry_run": args.dry_run,
            "ok": ok,
            "families": families,
        }))?;
    }
    Ok(if ok { Exit::Success } else { Exit::Failed })
}
