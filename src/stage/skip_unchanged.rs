//! `skip-unchanged`: ends a profile's chain before anything is built when the cloud's current
//! image already is what the flake would build, compared by output path.
//!
//! Every profile's output path comes from the run's ONE evaluation ([`super::batch`]), and
//! each profile's decision is made once and shared: the batched build asks for the decisions
//! of every profile to know which images to build, so that an unchanged image is never built.

use super::{slot, Artifact, Context, Kind, Outcome, Slot};
use crate::glance::Glance;
use crate::lifecycle::publish::{find_current, find_held, held_note, Family};
use crate::nix::{self, StorePath};
use std::sync::Arc;

/// Why the comparison could not be made.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    /// The output path of the profile's image could not be evaluated.
    #[error("cannot evaluate the output path of {installable} without building it")]
    OutPath {
        /// What was evaluated.
        installable: String,
        /// Why it failed (shared by every profile of the same evaluation).
        #[source]
        source: Arc<nix::Error>,
    },
    /// The evaluation ran but did not include this profile.
    #[error("{installable} was not in the evaluation of its attribute set")]
    NotEvaluated {
        /// What was asked for.
        installable: String,
    },
    /// The cloud's current image could not be looked up.
    #[error("cannot compare with the cloud")]
    Cloud(#[source] Arc<crate::lifecycle::publish::Error>),
}

/// What the cloud's current image is built from, against what the flake would build now.
#[derive(Debug, Clone)]
pub struct CloudState {
    /// The output path the flake would build.
    pub out_path: StorePath,
    /// The cloud's current image, if any.
    pub current: Option<String>,
    /// When the current image was built (its generation), if there is one.
    pub current_built_at: Option<time::OffsetDateTime>,
    /// True when the current image already is that output path.
    pub unchanged: bool,
}

/// One profile's decision, shared between its chain and the batched build.
#[derive(Debug, Clone)]
pub struct Decision {
    /// What the cloud has.
    pub state: CloudState,
    /// What the chain does next.
    pub next: Next,
    /// What the stage reports.
    pub note: String,
}

/// Whether a profile goes on to be built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// The flake gives something the cloud does not have: build it.
    Build,
    /// The cloud already has it: stop, `unchanged`.
    Unchanged,
    /// A rollback took this build out of service: stop, `held`.
    Held,
}

/// Decides for `profile` (whose image `installable` evaluates to `out`) against the cloud.
pub async fn decide(
    glance: &Glance,
    ctx: &Context<'_>,
    profile: &str,
    out: StorePath,
) -> Result<Decision, Error> {
    let cloud = |e| Error::Cloud(Arc::new(e));
    let name = ctx.image_name(profile);
    let family = Family {
        profile,
        name: &name,
    };
    let current = find_current(glance, &family).await.map_err(cloud)?;
    let current_built_at = current.as_ref().and_then(crate::lifecycle::built_at);
    if let Some(held) = find_held(glance, &family, out.as_str())
        .await
        .map_err(cloud)?
    {
        let note = held_note(&family, &held.id, out.as_str(), glance.cloud());
        return Ok(Decision {
            state: CloudState {
                out_path: out,
                current: current.map(|c| c.id),
                current_built_at,
                unchanged: false,
            },
            next: Next::Held,
            note,
        });
    }
    let unchanged = current
        .as_ref()
        .is_some_and(|c| c.property(crate::lifecycle::keys::STORE_PATH) == Some(out.as_str()));
    let (next, note) = match &current {
        Some(cur) if unchanged => (
            Next::Unchanged,
            format!(
                "{name} ({}) already is {out}; nothing to build or send",
                cur.id
            ),
        ),
        Some(cur) => (
            Next::Build,
            format!(
                "changed: {} is {}, the flake now gives {out}",
                cur.id,
                cur.property(crate::lifecycle::keys::STORE_PATH)
                    .unwrap_or("(no store path)"),
            ),
        ),
        None => (
            Next::Build,
            format!("no current `{name}` yet; will build {out}"),
        ),
    };
    Ok(Decision {
        state: CloudState {
            out_path: out,
            current: current.map(|c| c.id),
            current_built_at,
            unchanged,
        },
        next,
        note,
    })
}

/// The stage: fills `cloud_state`, and stops the chain when nothing changed.
pub async fn run(artifact: &mut Artifact, ctx: &Context<'_>) -> Result<Outcome, super::Error> {
    let ev = slot(&artifact.evaluated, Kind::SkipUnchanged, Slot::Evaluated)?;
    let decision = ctx.batch.decision(ctx, ev).await?;
    artifact.cloud_state = Some(decision.state);
    Ok(match decision.next {
        Next::Build => Outcome::Done(Some(decision.note)),
        Next::Unchanged => Outcome::Stop(decision.note),
        Next::Held => Outcome::Held(decision.note),
    })
}
