//! `pipeline completions SHELL`: a completion script from the clap definition, with the
//! project's pipeline and profile names as the values of the arguments that take them.
//!
//! clap_complete's stable generators write static scripts, so the names are the ones under
//! `--root` when the script is generated; its dynamic completer is still unstable. Without a
//! project (as when the Nix package generates its script) subcommands and flags still
//! complete, and a pipeline argument falls back to file names.

use crate::cli::{Cli, CompletionsArgs, PIPELINE_VALUE, PROFILE_VALUE};
use clap::builder::PossibleValuesParser;
use clap::CommandFactory;
use hephaestus::error::Exit;
use hephaestus::pipeline::Project;
use std::path::Path;

/// Run `pipeline completions`.
pub fn run(root: &Path, args: &CompletionsArgs) -> anyhow::Result<Exit> {
    let mut cmd = script_command(root);
    clap_complete::generate(args.shell, &mut cmd, "pipeline", &mut std::io::stdout());
    Ok(Exit::Success)
}

/// The command line as the script describes it: the real one, with the project's names as
/// possible values. Only the script is generated from it; arguments are never parsed with
/// it, so a pipeline given as a file path or a profile added later is still accepted.
pub fn script_command(root: &Path) -> clap::Command {
    let (pipelines, profiles) = names(root);
    let mut cmd = Cli::command();
    let subcommands: Vec<String> = cmd
        .get_subcommands()
        .map(|s| s.get_name().to_string())
        .collect();
    for name in subcommands {
        cmd = cmd.mut_subcommand(name, |mut sub| {
            let args: Vec<(clap::Id, Vec<String>)> = sub
                .get_arguments()
                .filter_map(|arg| {
                    let value = arg.get_value_names()?.first()?.as_str();
                    let names = match value {
                        PROFILE_VALUE => &profiles,
                        PIPELINE_VALUE => &pipelines,
                        _ => return None,
                    };
                    (!names.is_empty()).then(|| (arg.get_id().clone(), names.clone()))
                })
                .collect();
            for (id, names) in args {
                sub = sub.mut_arg(id, |arg| arg.value_parser(PossibleValuesParser::new(names)));
            }
            sub
        });
    }
    cmd
}

/// The pipeline and profile names under `root`, from the file names alone: a file with a
/// problem still names something the user may want to type. None when there is no project.
fn names(root: &Path) -> (Vec<String>, Vec<String>) {
    if !root.join("profiles").is_dir() {
        return (Vec::new(), Vec::new());
    }
    let Ok((project, _problems)) = Project::load(root) else {
        return (Vec::new(), Vec::new());
    };
    let pipelines = project
        .pipeline_names()
        .unwrap_or_default()
        .into_iter()
        .map(|(name, _)| name)
        .collect();
    let profiles = project.profile_files.into_iter().collect();
    (pipelines, profiles)
}
