//! `pipeline tag`: set or clear a CI's own tags (`tested`) on profiles' current images, or on
//! one generation, under the cloud's lock.

use super::output::say;
use crate::cli::TagArgs;
use anyhow::Context as _;
use hephaestus::error::{error_chain, Exit};
use hephaestus::lifecycle::{
    self,
    tagging::{self, Action, Target},
};
use serde_json::json;
use std::path::Path;

fn usage_or(e: lifecycle::Error, context: impl FnOnce() -> String) -> anyhow::Error {
    if e.is_usage() {
        super::UsageError(error_chain(&e)).into()
    } else {
        anyhow::Error::new(e).context(context())
    }
}

/// Run `pipeline tag`.
pub fn run(root: &Path, args: &TagArgs) -> anyhow::Result<Exit> {
    // A refused tag must stop the command before it asks the cloud anything.
    for tag in &args.tags {
        tagging::check_tag(tag).map_err(|e| usage_or(e, String::new))?;
    }
    let project = super::load_project(root)?;
    for p in &args.profiles {
        super::profile(&project, p)?;
    }
    if args.generation.is_some() && args.profiles.len() != 1 {
        return Err(super::UsageError(
            "--generation names one image: give exactly one --profile with it".into(),
        )
        .into());
    }
    let action = if args.remove {
        Action::Remove
    } else {
        Action::Set
    };
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    let glance = runtime.block_on(super::run::connect(args.cloud.as_deref()))?;
    let cloud = glance.cloud().to_string();
    let _lock = super::lock_cloud(root, &args.lock, &cloud)?;

    let profiles = if args.profiles.is_empty() {
        let in_cloud = runtime
            .block_on(lifecycle::profiles_in_cloud(&glance))
            .with_context(|| format!("cannot list the images of cloud {cloud}"))?;
        in_cloud
            .into_iter()
            .filter(|p| project.profiles.contains_key(p))
            .collect()
    } else {
        args.profiles.clone()
    };
    if profiles.is_empty() {
        return Err(anyhow::anyhow!(
            "cloud {cloud} holds no image of any profile: nothing to tag"
        ));
    }

    // Every target first: a missing one stops the command before any image is changed.
    let mut targets = Vec::new();
    for profile in &profiles {
        let name = args
            .name
            .as_deref()
            .map(|n| lifecycle::stable_name(n, profile));
        let target = Target {
            profile,
            name: name.as_deref(),
            generation: args.generation.as_deref(),
        };
        let resolved = runtime
            .block_on(tagging::resolve(&glance, &target))
            .map_err(|e| {
                usage_or(e, || {
                    format!("cannot tag `{profile}` in cloud {cloud}: nothing was tagged")
                })
            })?;
        targets.push(resolved);
    }

    let mut done = Vec::new();
    for resolved in &targets {
        let tagged = runtime
            .block_on(tagging::apply(&glance, resolved, action, &args.tags))
            .with_context(|| {
                let before: Vec<&str> = done
                    .iter()
                    .map(|t: &tagging::Tagged| t.id.as_str())
                    .collect();
                format!(
                    "cannot tag `{}` in cloud {cloud} (images already done: {})",
                    resolved.profile,
                    if before.is_empty() {
                        "none".into()
                    } else {
                        before.join(", ")
                    }
                )
            })?;
        let verb = match (action, tagged.changed) {
            (Action::Set, true) => "tagged",
            (Action::Set, false) => "already tagged",
            (Action::Remove, true) => "untagged",
            (Action::Remove, false) => "already without",
        };
        say!(
            "{cloud}: {}: {verb} {} on {} ({}, {}, generation {})",
            tagged.profile,
            args.tags.join(", "),
            tagged.image_name,
            tagged.id,
            tagged.role.as_str(),
            tagged.generation
        );
        done.push(tagged);
    }
    if args.json {
        super::print_json(&json!({
            "cloud": cloud,
            "action": action,
            "tags": args.tags,
            "images": done,
        }))?;
    }
    Ok(Exit::Success)
}
