//! `pipeline man`: the man pages, rendered by clap_mangen from the same definition as
//! `--help` (`make man` writes them under target/man/man1; the Nix package installs them).

use super::output::say;
use crate::cli::{Cli, ManArgs};
use anyhow::Context as _;
use clap::CommandFactory;
use hephaestus::error::Exit;

/// Run `pipeline man`.
pub fn run(args: &ManArgs) -> anyhow::Result<Exit> {
    // `help` is a flag on every page already; as a subcommand it would get a page of its own.
    let cmd = Cli::command().disable_help_subcommand(true);
    let Some(dir) = &args.out_dir else {
        let mut page = Vec::new();
        clap_mangen::Man::new(cmd).render(&mut page)?;
        std::io::Write::write_all(&mut std::io::stdout(), &page)?;
        return Ok(Exit::Success);
    };
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    clap_mangen::generate_to(cmd, dir)
        .with_context(|| format!("cannot write the man pages into {}", dir.display()))?;
    say!("man pages written into {}", dir.display());
    Ok(Exit::Success)
}
