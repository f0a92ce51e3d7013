//! `pipeline schema`: print the JSON Schema of pipelines, profiles or the policy (the files
//! under `schemas/` are this output, written by `make schema`).

use crate::cli::SchemaArgs;
use hephaestus::error::Exit;

/// Run `pipeline schema`.
pub fn run(args: &SchemaArgs) -> anyhow::Result<Exit> {
    print!("{}", args.document.document().render());
    Ok(Exit::Success)
}
