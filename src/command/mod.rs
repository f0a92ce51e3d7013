//! The subcommands, one file each; the only code besides `main` that uses `anyhow`, adding
//! context at the edge and choosing exit codes.

pub mod boot_check;
pub mod images;
pub mod list;
pub mod plan;
pub mod promote;
pub mod prune;
pub mod rollback;
pub mod run;
pub mod validate;
pub mod verify;

use hephaestus::pipeline::{LoadError, Project};
use std::path::Path;

/// A usage or configuration error: exit code 2 (DESIGN §7).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// Exit code for an error that ended a command: 2 for configuration and usage problems,
/// 1 for everything else.
pub fn exit_code_of(err: &anyhow::Error) -> u8 {
    let config = err.chain().any(|e| {
        e.downcast_ref::<LoadError>().is_some() || e.downcast_ref::<UsageError>().is_some()
    });
    if config {
        2
    } else {
        1
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

/// Print `value` as the one JSON document of stdout.
pub fn print_json<T: serde::Serialize>(value: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}
