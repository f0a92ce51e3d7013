//! `pipeline list`: the pipelines with their descriptions and the profiles with their boot mode.

use super::output::say;
use crate::cli::ListArgs;
use hephaestus::error::Exit;
use hephaestus::pipeline::spec::PipelineSpec;
use serde_json::json;
use std::path::Path;

/// Run `pipeline list`.
pub fn run(root: &Path, args: &ListArgs) -> anyhow::Result<Exit> {
    let project = super::load_project(root)?;
    let mut pipelines = Vec::new();
    for (name, path) in project.pipeline_names()? {
        // A broken pipeline is still listed: `validate` is the place to explain it.
        let description =
            hephaestus::bounded::read_text(&path, hephaestus::bounded::MAX_CONFIG_BYTES)
                .ok()
                .and_then(|t| serde_saphyr::from_str::<PipelineSpec>(&t).ok())
                .map(|s| s.description)
                .unwrap_or_else(|| "(invalid: run `pipeline validate`)".into());
        pipelines.push((name, description));
    }
    if args.json {
        return super::print_json(&json!({
            "pipelines": pipelines.iter().map(|(n, d)| json!({"name": n, "description": d})).collect::<Vec<_>>(),
            "profiles": project.profiles.values().map(|p| json!({
                "name": p.name, "boot": p.boot, "role": p.role, "description": p.description,
                "attribute": p.attribute,
            })).collect::<Vec<_>>(),
        }))
        .map(|()| Exit::Success);
    }
    say!("Pipelines:");
    for (name, description) in &pipelines {
        say!("  {name:<14} {description}");
    }
    say!("Profiles:");
    for p in project.profiles.values() {
        say!("  {:<10} {:<5} {}", p.name, p.boot.as_str(), p.description);
    }
    Ok(Exit::Success)
}
