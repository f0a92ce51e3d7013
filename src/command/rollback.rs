//! `pipeline rollback`: make the previous (or a named) generation of a profile current again.

use super::output::say;
use crate::cli::RollbackArgs;
use anyhow::Context as _;
use hephaestus::error::error_chain;
use hephaestus::error::Exit;
use hephaestus::lifecycle::{self, RollbackRequest};
use std::path::Path;

/// Run `pipeline rollback`.
pub fn run(root: &Path, args: &RollbackArgs) -> anyhow::Result<Exit> {
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    let glance = runtime.block_on(super::run::connect(args.cloud.as_deref()))?;
    let _lock = super::lock_cloud(root, &args.lock, glance.cloud())?;
    let name = args
        .name
        .as_ref()
        .map(|n| n.replace("{profile}", &args.profile));
    let request = RollbackRequest {
        profile: &args.profile,
        name: name.as_deref(),
        to: args.to.as_deref(),
    };
    let done = match runtime.block_on(lifecycle::rollback(&glance, &request)) {
        Ok(done) => done,
        Err(e) if e.is_usage() => return Err(super::UsageError(error_chain(&e)).into()),
        Err(e) => {
            return Err(anyhow::Error::new(e).context(format!(
                "cannot roll back `{}` in cloud {}",
                args.profile,
                glance.cloud()
            )))
        }
    };
    say!("{}: {}", glance.cloud(), done.message);
    if args.json {
        let mut doc = serde_json::to_value(&done)?;
        doc["cloud"] = glance.cloud().into();
        super::print_json(&doc)?;
    }
    Ok(Exit::Success)
}
