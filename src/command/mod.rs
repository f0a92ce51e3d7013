//! The subcommands, one file each; the only code besides `main` that uses `anyhow`, adding
//! context at the edge and choosing exit codes.

pub mod boot_check;
pub mod check;
pub mod completions;
pub mod images;
pub mod list;
pub mod man;
pub mod output;
pub mod plan;
pub mod promote;
pub mod prune;
pub mod release;
pub mod rollback;
pub mod run;
pub mod schema;
pub mod tag;
pub mod validate;
pub mod verify;

use hephaestus::error::Exit;
use hephaestus::lifecycle;
use hephaestus::pipeline::run_dir::{self, RunDir};
use hephaestus::pipeline::{LoadError, Profile, Project};
use std::path::Path;

/// A usage or configuration error: exit code 2 (DESIGN §7).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// The exit status for an error that ended a command (DESIGN §7), decided here and only
/// here: [`Exit::Cleanup`] when a cloud may be left half-changed (the message names the
/// images), [`Exit::Busy`] when another process held the cloud's lock, [`Exit::Usage`] for
/// configuration and usage problems, [`Exit::Failed`] for the rest.
pub fn exit_code_of(err: &anyhow::Error) -> Exit {
    let half_done = err.chain().any(|e| {
        e.downcast_ref::<lifecycle::Error>()
            .is_some_and(lifecycle::Error::left_half_done)
            || e.downcast_ref::<lifecycle::publish::Error>()
                .is_some_and(lifecycle::publish::Error::cleanup_failed)
    });
    let busy = err.chain().any(|e| {
        matches!(
            e.downcast_ref::<run_dir::Error>(),
            Some(run_dir::Error::Busy { .. })
        )
    });
    let usage = err.chain().any(|e| {
        e.downcast_ref::<LoadError>().is_some() || e.downcast_ref::<UsageError>().is_some()
    });
    if half_done {
        Exit::Cleanup
    } else if busy {
        Exit::Busy
    } else if usage {
        Exit::Usage
    } else {
        Exit::Failed
    }
}

/// Load the profiles and the policy under `root`; any problem in them stops the command.
pub fn load_project(root: &Path) -> anyhow::Result<Project> {
    if !root.join("profiles").is_dir() {
        return Err(UsageError(format!(
            "{} has no profiles/ directory: run from the project root or pass --root DIR",
            root.display()
        ))
        .into());
    }
    let (project, diagnostics) = Project::load(root)?;
    if !diagnostics.is_empty() {
        return Err(LoadError::Invalid(diagnostics).into());
    }
    Ok(project)
}

/// The profile `name`, or a usage error listing the known ones.
pub fn profile<'a>(project: &'a Project, name: &str) -> anyhow::Result<&'a Profile> {
    project.profiles.get(name).ok_or_else(|| {
        let known: Vec<&str> = project.profiles.keys().map(String::as_str).collect();
        UsageError(format!(
            "--profile {name}: no such profile (known: {})",
            known.join(", ")
        ))
        .into()
    })
}

/// The run directory: `--run-dir` / `HEPHAESTUS_RUN_DIR`, else `ROOT/.run`; absolute, so the
/// paths in logs and reports still work from another directory.
pub fn run_dir(root: &Path, given: Option<&Path>) -> anyhow::Result<RunDir> {
    let dir = given.map_or_else(|| root.join(".run"), Path::to_path_buf);
    std::path::absolute(&dir)
        .map(RunDir::new)
        .map_err(|e| anyhow::Error::new(e).context(format!("cannot resolve {}", dir.display())))
}

/// Hold the per-cloud lock that every command changing a cloud's image families takes.
pub fn lock_cloud(
    root: &Path,
    lock: &crate::cli::LockArgs,
    cloud: &str,
) -> anyhow::Result<run_dir::CloudLock> {
    let runs = run_dir(root, lock.run_dir.as_deref())?;
    Ok(runs.lock_cloud(cloud, std::time::Duration::from_secs(lock.lock_timeout))?)
}

/// Print `value` as the one JSON document of stdout.
pub fn print_json<T: serde::Serialize>(value: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}
