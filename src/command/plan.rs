//! `pipeline plan`: per profile, the stages that will run, the firmware, and every Glance
//! property and tag the tag stage will set — without building or publishing anything.

use super::output::say;
use crate::cli::{PlanArgs, TargetArgs};
use anyhow::Context as _;
use hephaestus::error::Exit;
use hephaestus::pipeline::{load_pipeline, Overrides, Plan, Project};
use hephaestus::stage::{evaluate, tag, Stage};
use serde_json::json;
use std::path::Path;

/// Load and validate the pipeline `args` names.
pub fn load(root: &Path, args: &TargetArgs) -> anyhow::Result<(Project, Plan)> {
    let project = super::load_project(root)?;
    let path = project.pipeline_path(&args.target)?;
    let flake = match &args.flake {
        // A --flake path is relative to where the user typed it, not to --root.
        Some(f) if !f.contains(':') => Some(
            std::fs::canonicalize(f)
                .map_err(|e| super::UsageError(format!("--flake {f}: {e}")))?
                .display()
                .to_string(),
        ),
        other => other.clone(),
    };
    let overrides = Overrides {
        clouds: args.cloud.clone(),
        flake,
        profiles: args.profiles.clone(),
    };
    let plan = load_pipeline(&project, &path, &overrides)?;
    Ok((project, plan))
}

/// Run `pipeline plan`.
pub fn run(root: &Path, args: &PlanArgs) -> anyhow::Result<Exit> {
    let (project, plan) = load(root, &args.target)?;
    let stage_names: Vec<&str> = plan.stages.iter().map(|s| s.name()).collect();
    // A boot proof the pipeline chose to skip is said, with its reason, wherever stages are.
    let skipped_boot = plan.stages.iter().find_map(|s| match s {
        Stage::BootCheck(o) => o.skip.clone(),
        _ => None,
    });
    // Which boot check runs: with a config drive (the metadata check) or without.
    let boot_metadata = plan.stages.iter().find_map(|s| match s {
        Stage::BootCheck(o) if o.skip.is_none() => o.metadata,
        _ => None,
    });
    let mut profiles = Vec::new();
    for profile in &plan.profiles {
        let ev = evaluate::evaluate(
            profile,
            &project.policy,
            plan.flake.as_deref(),
            &project.root,
        )
        .map_err(|e| super::UsageError(e.to_string()))
        .with_context(|| format!("profile {}", profile.name))?;
        let image_name = plan.image_name(&profile.name);
        let facts = tag::Facts {
            built_at: time::OffsetDateTime::now_utc(),
            keep: plan.keep(),
        };
        let tagging = tag::tag(&ev, &plan.pipeline, &image_name, None, facts);
        profiles.push((ev, image_name, tagging));
    }
    if args.json {
        return super::print_json(&json!({
            "pipeline": plan.pipeline,
            "file": plan.file,
            "cloud": plan.cloud(),
            "clouds": plan.clouds,
            "concurrency": plan.concurrency,
            "stages": stage_names,
            "boot_check_skipped": skipped_boot,
            "boot_check_metadata": boot_metadata,
            "profiles": profiles.iter().map(|(ev, name, t)| json!({
                "profile": ev.profile,
                "firmware": ev.boot,
                "installable": ev.installable,
                "image_name": name,
                "min_disk": ev.min_disk,
                "min_ram": ev.min_ram,
                "properties": t.properties,
                "pending_properties": t.pending,
                "tags": t.tags,
            })).collect::<Vec<_>>(),
        }))
        .map(|()| Exit::Success);
    }
    say!(
        "{} ({}): {} profile(s) → cloud {}, {} at a time",
        plan.pipeline,
        plan.file.display(),
        plan.profiles.len(),
        if plan.clouds.is_empty() {
            "(none)".to_string()
        } else {
            plan.clouds.join(" + ")
        },
        plan.concurrency
    );
    say!("stages: {}", stage_names.join(" → "));
    if let Some(reason) = &skipped_boot {
        say!("boot-check: SKIPPED, images are published without a boot proof: {reason}");
    }
    if let Some(m) = boot_metadata {
        say!("boot-check: metadata: {m}: each image {}", m.describe());
    }
    for (ev, name, t) in &profiles {
        say!();
        say!(
            "{}  firmware={}  image={}  {}",
            ev.profile,
            ev.boot,
            name,
            ev.installable
        );
        if ev.min_disk.is_some() || ev.min_ram.is_some() {
            say!(
                "  min_disk={} GiB  min_ram={} MiB",
                ev.min_disk.map_or("-".into(), |v| v.to_string()),
                ev.min_ram.map_or("-".into(), |v| v.to_string())
            );
        }
        say!("  properties:");
        for (k, v) in &t.properties {
            say!("    {k}={v}");
        }
        for (k, from) in &t.pending {
            say!("    {k}=<{from}>");
        }
        say!(
            "  tags: {}  (+ `candidate` while uploading, `current` once published)",
            t.tags.join(", ")
        );
    }
    Ok(Exit::Success)
}
