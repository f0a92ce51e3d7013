//! `pipeline validate`: every problem in pipelines, profiles and the policy, in one report.

use super::output::say;
use crate::cli::ValidateArgs;
use hephaestus::error::Exit;
use hephaestus::pipeline::validate::validate_all;
use hephaestus::pipeline::LoadError;
use serde_json::json;
use std::path::Path;

/// Run `pipeline validate`.
pub fn run(root: &Path, args: &ValidateArgs) -> anyhow::Result<Exit> {
    if !root.join("profiles").is_dir() {
        return Err(super::UsageError(format!(
            "{} has no profiles/ directory: run from the project root or pass --root DIR",
            root.display()
        ))
        .into());
    }
    let (checked, diagnostics) = validate_all(root, &args.targets)?;
    if args.json {
        super::print_json(
            &json!({ "ok": diagnostics.is_empty(), "pipelines_checked": checked, "problems": diagnostics }),
        )?;
        return Ok(if diagnostics.is_empty() {
            Exit::Success
        } else {
            Exit::Usage
        });
    }
    if diagnostics.is_empty() {
        say!("ok: {checked} pipeline(s), the profiles and the firmware policy are valid");
        Ok(Exit::Success)
    } else {
        Err(LoadError::Invalid(diagnostics).into())
    }
}
