//! `pipeline images`: per profile, the current image and every kept generation in a cloud.

use crate::cli::ImagesArgs;
use anyhow::Context as _;
use hephaestus::glance::{Hidden, Image, ImageFilter};
use serde_json::json;
use std::collections::BTreeMap;
use std::path::Path;

fn row(image: &Image) -> serde_json::Value {
    let role = if image.tags.iter().any(|t| t == "current") {
        "current"
    } else if image.tags.iter().any(|t| t == "previous") {
        "previous"
    } else if image.tags.iter().any(|t| t == "rolled-back") {
        "rolled-back"
    } else if image.tags.iter().any(|t| t == "candidate") {
        "candidate"
    } else {
        "kept"
    };
    json!({
        "id": image.id,
        "name": image.display_name(),
        "role": role,
        "generation": image.property("hephaestus_generation"),
        "firmware": image.property("hw_firmware_type"),
        "size": image.size,
        "status": image.status.to_string(),
        "hidden": image.os_hidden,
        "created_at": image.created_at,
        "store_path": image.property("hephaestus_store_path"),
    })
}

/// Run `pipeline images`.
pub fn run(root: &Path, args: &ImagesArgs) -> anyhow::Result<u8> {
    // The profiles give the order and catch a misspelt --profile before asking the cloud.
    let project = super::load_project(root)?;
    for p in &args.profiles {
        super::profile(&project, p)?;
    }
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    let glance = runtime.block_on(super::run::connect(args.cloud.as_deref()))?;
    let filter = ImageFilter {
        tags: vec!["hephaestus".into()],
        hidden: Hidden::Include,
        ..ImageFilter::default()
    };
    let images = runtime
        .block_on(glance.list_images(&filter))
        .with_context(|| format!("cannot list the images of cloud {}", glance.cloud()))?;
    let mut by_profile: BTreeMap<String, Vec<Image>> = BTreeMap::new();
    for image in images {
        let Some(profile) = image.property("hephaestus_profile").map(str::to_string) else {
            continue;
        };
        if args.profiles.is_empty() || args.profiles.contains(&profile) {
            by_profile.entry(profile).or_default().push(image);
        }
    }
    for list in by_profile.values_mut() {
        // Current first, then newest first: the order a rollback would walk.
        list.sort_by(|a, b| {
            let current = |i: &Image| i.tags.iter().any(|t| t == "current");
            current(b)
                .cmp(&current(a))
                .then_with(|| b.created_at.cmp(&a.created_at))
        });
    }
    if args.json {
        let doc: BTreeMap<&String, Vec<serde_json::Value>> = by_profile
            .iter()
            .map(|(p, list)| (p, list.iter().map(row).collect()))
            .collect();
        super::print_json(&json!({ "cloud": glance.cloud(), "profiles": doc }))?;
        return Ok(0);
    }
    eprintln!("cloud {}:", glance.cloud());
    if by_profile.is_empty() {
        eprintln!("  no Hephaestus images");
    }
    for (profile, list) in &by_profile {
        eprintln!("{profile}:");
        for image in list {
            let r = row(image);
            let text = |k: &str| {
                r[k].as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| "-".into())
            };
            eprintln!(
                "  {:<9} {}  {:<34} gen {:<22} {:<4} {:>12} B  {:<8} {}",
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
    Ok(0)
}
