//! `pipeline run`: load and validate, authenticate when the pipeline publishes, run, report.

use crate::cli::RunArgs;
use anyhow::Context as _;
use hephaestus::glance::{self, ErrorKind};
use hephaestus::pipeline::runner::{self, RunOptions};
use hephaestus::stage::Stage;
use std::io::IsTerminal as _;
use std::path::Path;

/// Open the cloud session; refused credentials or configuration are exit code 2.
pub async fn connect(cloud: Option<&str>) -> anyhow::Result<glance::Glance> {
    match glance::connect(cloud).await {
        Ok(g) => Ok(g),
        Err(e)
            if matches!(
                e.kind(),
                ErrorKind::Auth | ErrorKind::Config | ErrorKind::Forbidden
            ) =>
        {
            let message = format!(
                "cannot publish: authentication to cloud `{}` failed: {}; nothing was built or created \
                 (check clouds.yaml / OS_CLIENT_CONFIG_FILE, --cloud, or the OS_* variables)",
                cloud.unwrap_or("(from OS_CLOUD / OS_*)"),
                hephaestus::pipeline::runner::error_chain(&e)
            );
            Err(super::UsageError(message).into())
        }
        Err(e) => {
            Err(anyhow::Error::new(e)
                .context("cannot reach the cloud; nothing was built or created"))
        }
    }
}

/// Run `pipeline run`.
pub fn run(root: &Path, args: &RunArgs) -> anyhow::Result<u8> {
    let (project, plan) = super::plan::load(root, &args.target)?;
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
    let uploads = plan.stages.iter().any(|s| matches!(s, Stage::Upload(_)));
    // Authenticate before building anything: a wrong password must not cost an hour of builds.
    let glance = if uploads && !args.dry_run {
        Some(runtime.block_on(connect(plan.cloud.as_deref()))?)
    } else {
        None
    };
    let options = RunOptions {
        dry_run: args.dry_run,
        run_dir: args
            .run_dir
            .clone()
            .unwrap_or_else(|| project.root.join(".run")),
        keep_outputs: args.keep_outputs,
        progress_bars: std::io::stderr().is_terminal(),
    };
    let report = runtime.block_on(runner::run(&plan, &project, glance.as_ref(), &options));
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
