//! `pipeline promote`: copy each profile's current image from one cloud into another and make
//! it current there — the `promote` stage of `pipelines/promote.yaml`, from the command line.

use crate::cli::PromoteArgs;
use hephaestus::error::Exit;
use hephaestus::pipeline::runner::RunOptions;
use hephaestus::pipeline::Plan;
use hephaestus::progress::Reporter;
use hephaestus::stage::{promote, Stage};
use std::io::IsTerminal as _;
use std::path::Path;

/// Run `pipeline promote`.
pub fn run(root: &Path, args: &PromoteArgs) -> anyhow::Result<Exit> {
    let project = super::load_project(root)?;
    if args.from == args.to {
        return Err(super::UsageError(format!(
            "--from and --to are both `{}`: promotion copies between two clouds",
            args.from
        ))
        .into());
    }
    let mut profiles = Vec::new();
    for name in &args.profiles {
        profiles.push(super::profile(&project, name)?.clone());
    }
    if profiles.is_empty() {
        profiles = project.profiles.values().cloned().collect();
    }
    let plan = Plan {
        pipeline: "promote".into(),
        description: format!("promote from {} to {}", args.from, args.to),
        file: "(command line)".into(),
        clouds: vec![args.to.clone()],
        flake: None,
        concurrency: 1,
        stages: vec![Stage::Promote(promote::Options {
            from: args.from.clone(),
            name: args.name.clone(),
            generation: args.generation.clone(),
            require_tag: args.require_tag.clone(),
            ..promote::Options::default()
        })],
        profiles,
        nix: Default::default(),
    };
    let options = RunOptions {
        dry_run: args.dry_run,
        run_dir: super::run_dir(&project.root, args.run_dir.as_deref())?,
        keep_outputs: false,
        reporter: Reporter::new(std::io::stderr().is_terminal() && !super::output::json()),
        // Promotion boots nothing.
        boot_cache: None,
    };
    let lock_timeout = std::time::Duration::from_secs(args.lock_timeout);
    super::run::execute(
        &project,
        &plan,
        &options,
        lock_timeout,
        args.json,
        args.report.as_deref(),
        None,
    )
}
