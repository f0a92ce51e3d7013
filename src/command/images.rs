//! `pipeline images`: per profile, the current image and every kept generation in a cloud.

use super::output::say;
use crate::cli::ImagesArgs;
use anyhow::Context as _;
use hephaestus::error::Exit;
use hephaestus::glance::Image;
use hephaestus::lifecycle::{self, keys, Role};
use serde_json::json;
use std::collections::BTreeMap;
use std::path::Path;

fn row(image: &Image) -> serde_json::Value {
    let role = Role::of(image).as_str();
    json!({
        "id": image.id,
        "name": image.display_name(),
        "role": role,
        "generation": image.property(keys::GENERATION),
        "firmware": image.property(keys::FIRMWARE_TYPE),
        "size": image.size,
        "status": image.status.to_string(),
        "hidden": image.os_hidden,
        "created_at": image.created_at,
        "store_path": image.property(keys::STORE_PATH),
    })
}

/// Run `pipeline images`.
pub fn run(root: &Path, args: &ImagesArgs) -> anyhow::Result<Exit> {
    // The profiles give the order and catch a misspelt --profile before asking the cloud.
    let project = super::load_project(root)?;
    for p in &args.profiles {
        super::profile(&project, p)?;
    }
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    let glance = runtime.block_on(super::run::connect(args.cloud.as_deref()))?;
    let images = runtime
        .block_on(lifecycle::pipeline_images(&glance))
        .with_context(|| format!("cannot list the images of cloud {}", glance.cloud()))?;
    let mut by_profile: BTreeMap<String, Vec<Image>> = BTreeMap::new();
    for image in images {
        let Some(profile) = image.property(keys::PROFILE).map(str::to_string) else {
            continue;
        };
        if args.profiles.is_empty() || args.profiles.contains(&profile) {
            by_profile.entry(profile).or_default().push(image);
        }
    }
    for list in by_profile.values_mut() {
        // Current first, then newest first: the order a rollback would walk.
        list.sort_by(|a, b| {
            let current = |i: &Image| Role::of(i) == Role::Current;
            current(b)
                .cmp(&current(a))
                .then_with(|| b.created_at.cmp(&a.created_at))
        });
    }
    let now = time::OffsetDateTime::now_utc();
    let stale: Vec<serde_json::Value> = match args.stale_after {
        Some(limit) => by_profile
            .values()
            .flatten()
            .filter(|i| Role::of(i) == Role::Current)
            .filter_map(|i| staleness(i, limit, now))
            .collect(),
        None => Vec::new(),
    };
    let exit = if stale.is_empty() {
        Exit::Success
    } else {
        Exit::Stale
    };
    if args.json {
        let doc: BTreeMap<&String, Vec<serde_json::Value>> = by_profile
            .iter()
            .map(|(p, list)| (p, list.iter().map(row).collect()))
            .collect();
        let mut out = json!({ "cloud": glance.cloud(), "profiles": doc });
        if args.stale_after.is_some() {
            out["stale"] = json!(stale);
        }
        super::print_json(&out)?;
        say_stale(&stale);
        return Ok(exit);
    }
    say!("cloud {}:", glance.cloud());
    if by_profile.is_empty() {
        say!("  no Hephaestus images");
    }
    for (profile, list) in &by_profile {
        say!("{profile}:");
        for image in list {
            let r = row(image);
            let text = |k: &str| {
                r[k].as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| "-".into())
            };
            say!(
                "  {:<11} {}  {:<40} gen {:<22} {:<4} {:>12} B  {:<8} {}",
                text("role"),
                image.id,
                image.display_name(),
                text("generation"),
                text("firmware"),
                image.size.map_or_else(|| "-".into(), |s| s.to_string()),
                text("status"),
                text("created_at"),
            );
        }
    }
    say_stale(&stale);
    Ok(exit)
}

/// Why `image`, a current image, is stale: older than `limit`, or than its own
/// `replace_frequency` allows; `None` when it is not (or its build time is unknown).
fn staleness(
    image: &Image,
    limit: std::time::Duration,
    now: time::OffsetDateTime,
) -> Option<serde_json::Value> {
    let built = lifecycle::built_at(image)?;
    let age = now - built;
    let frequency = image.property("replace_frequency");
    let promised = frequency.and_then(hephaestus::scs::max_age);
    let reason = if age > limit {
        format!(
            "built {} ago, more than --stale-after {}",
            days(age),
            days(limit)
        )
    } else if let Some(max) = promised.filter(|max| age > *max) {
        format!(
            "built {} ago, more than its replace_frequency `{}` allows ({})",
            days(age),
            frequency.unwrap_or_default(),
            days(max)
        )
    } else {
        return None;
    };
    Some(json!({
        "profile": image.property(keys::PROFILE),
        "id": image.id,
        "name": image.display_name(),
        "built_at": hephaestus::pipeline::report::rfc3339(built),
        "age_seconds": age.whole_seconds(),
        "reason": reason,
    }))
}

/// A duration as days and hours, for people.
fn days(d: impl TryInto<std::time::Duration>) -> String {
    let secs = d.try_into().map(|d| d.as_secs()).unwrap_or(0);
    format!("{}d{}h", secs / 86_400, secs % 86_400 / 3600)
}

fn say_stale(stale: &[serde_json::Value]) {
    for s in stale {
        say!(
            "stale: {} {} ({}): {}",
            s["profile"].as_str().unwrap_or("?"),
            s["name"].as_str().unwrap_or("?"),
            s["id"].as_str().unwrap_or("?"),
            s["reason"].as_str().unwrap_or("?")
        );
    }
}
