//! `pipeline run`: load and validate, authenticate when the pipeline publishes, run, report.

use super::output::say;
use crate::cli::RunArgs;
use anyhow::Context as _;
use hephaestus::error::Exit;
use hephaestus::glance::{self, ErrorKind};
use hephaestus::pipeline::runner::{self, Clouds, RunOptions};
use hephaestus::pipeline::{Plan, Project};
use hephaestus::progress::Reporter;
use std::io::IsTerminal as _;
use std::path::Path;
use std::time::Duration;

/// Open the cloud session; refused credentials or configuration are exit code 2.
pub async fn connect(cloud: Option<&str>) -> anyhow::Result<glance::Glance> {
    let name = cloud.unwrap_or("(from OS_CLOUD / OS_*)");
    match glance::connect(cloud).await {
        Ok(g) => Ok(g),
        // A configuration error (clouds.yaml, TLS) names the cloud and its fix itself.
        Err(e) if e.kind() == ErrorKind::Config => {
            Err(super::UsageError(hephaestus::error::error_chain(&e).to_string()).into())
        }
        Err(e) if matches!(e.kind(), ErrorKind::Auth | ErrorKind::Forbidden) => {
            let message = format!(
                "authentication to cloud `{name}` failed: {} (check clouds.yaml / \
                 OS_CLIENT_CONFIG_FILE, --cloud, or the OS_* variables)",
                hephaestus::error::error_chain(&e)
            );
            Err(super::UsageError(message).into())
        }
        Err(e) => Err(anyhow::Error::new(e).context(format!("cannot reach cloud `{name}`"))),
    }
}

/// Said when a run stops before its first stage.
const NOTHING_DONE: &str = "nothing was built or published";

/// Run `pipeline run`.
pub fn run(root: &Path, args: &RunArgs) -> anyhow::Result<Exit> {
    let (project, plan) = super::plan::load(root, &args.target)?;
    let options = RunOptions {
        dry_run: args.dry_run,
        run_dir: super::run_dir(&project.root, args.run_dir.as_deref())?,
        keep_outputs: args.keep_outputs,
        reporter: Reporter::new(std::io::stderr().is_terminal() && !super::output::json()),
        boot_cache: if args.no_boot_cache {
            None
        } else {
            hephaestus::boot::cache::default_dir()
        },
    };
    let lock_timeout = Duration::from_secs(args.lock_timeout);
    execute(
        &project,
        &plan,
        &options,
        lock_timeout,
        args.json,
        args.report.as_deref(),
        args.metrics.as_deref(),
    )
}

/// Authenticate to the clouds `plan` needs, run it, print and write the report.
pub fn execute(
    project: &Project,
    plan: &Plan,
    options: &RunOptions,
    lock_timeout: Duration,
    json: bool,
    report_file: Option<&Path>,
    metrics_file: Option<&Path>,
) -> anyhow::Result<Exit> {
    say!(
        "{}: {} profile(s), stages {}{}",
        plan.pipeline,
        plan.profiles.len(),
        plan.stages
            .iter()
            .map(|s| s.name())
            .collect::<Vec<_>>()
            .join(" → "),
        if options.dry_run { " (dry run)" } else { "" }
    );
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    // Authenticate before building anything: a wrong password must not cost an hour of builds.
    let mut clouds = Clouds::default();
    if !options.dry_run {
        let needed = plan.clouds_needed();
        if needed.target {
            // No cloud named: the one the environment names (OS_CLOUD / OS_*).
            let names: Vec<Option<&str>> = if plan.clouds.is_empty() {
                vec![None]
            } else {
                plan.clouds.iter().map(|c| Some(c.as_str())).collect()
            };
            for name in names {
                clouds
                    .targets
                    .push(runtime.block_on(connect(name)).context(NOTHING_DONE)?);
            }
        }
        if let Some(from) = &needed.source {
            clouds.source = Some(
                runtime
                    .block_on(connect(Some(from)))
                    .context(NOTHING_DONE)?,
            );
        }
    }
    // Two runs publishing into one cloud from one machine would race for the same "current"
    // images: the second waits for the first. (Across machines, making an image current
    // re-reads the current image first and aborts if it changed.)
    // Locks are taken in name order, so two runs into overlapping sets of clouds never each
    // hold one lock while waiting for the other's.
    let mut lock_names: Vec<&str> = clouds.targets.iter().map(|g| g.cloud()).collect();
    lock_names.sort_unstable();
    lock_names.dedup();
    let mut _locks = Vec::new();
    if !options.dry_run {
        for name in lock_names {
            _locks.push(options.run_dir.lock_cloud(name, lock_timeout)?);
        }
    }
    let report = runtime.block_on(runner::run(plan, project, &clouds, options));
    say!("{}", report.render_text());
    if let Some(path) = report_file {
        let text = serde_json::to_string_pretty(&report)?;
        std::fs::write(path, text + "\n")
            .with_context(|| format!("cannot write the report to {}", path.display()))?;
    }
    if let Some(path) = metrics_file {
        hephaestus::pipeline::metrics::write(&report, path)?;
        say!("metrics written to {}", path.display());
    }
    if json {
        super::print_json(&report)?;
    }
    Ok(report.exit())
}
