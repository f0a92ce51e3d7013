//! `pipeline run`: load and validate, refuse what this version cannot do, run, report.

use crate::cli::RunArgs;
use anyhow::Context as _;
use hephaestus::pipeline::runner::{self, RunOptions};
use hephaestus::stage::Stage;
use std::path::Path;

/// Stages this version can run for real (the others only under `--dry-run`).
fn available(stage: &Stage) -> bool {
    matches!(stage, Stage::Evaluate | Stage::Tag)
}

/// Run `pipeline run`.
pub fn run(root: &Path, args: &RunArgs) -> anyhow::Result<u8> {
    let (project, plan) = super::plan::load(root, &args.target)?;
    if !args.dry_run {
        if let Some(stage) = plan.stages.iter().find(|s| !available(s)) {
            return Err(super::UsageError(format!(
                "pipeline `{}` uses stage `{}`, which this version of pipeline cannot run yet; \
                 nothing was done (use --dry-run to see what the pipeline would do)",
                plan.pipeline,
                stage.name()
            ))
            .into());
        }
    }
    eprintln!(
        "{}: {} profile(s), stages {}{}",
        plan.pipeline,
        plan.profiles.len(),
        plan.stages
            .iter()
            .map(|s| s.name())
            .collect::<Vec<_>>()
            .join(" → "),
        if args.dry_run { " (dry run)" } else { "" }
    );
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    let report = runtime.block_on(runner::run(
        &plan,
        &project,
        &RunOptions {
            dry_run: args.dry_run,
        },
    ));
    eprint!("{}", report.render_text());
    if let Some(path) = &args.report {
        let text = serde_json::to_string_pretty(&report)?;
        std::fs::write(path, text + "\n")
            .with_context(|| format!("cannot write the report to {}", path.display()))?;
    }
    if args.json {
        super::print_json(&report)?;
    }
    Ok(report.exit_code())
}
