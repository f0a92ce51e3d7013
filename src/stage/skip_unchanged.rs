//! `skip-unchanged`: ends a profile's chain before anything is built when the cloud's current
//! image already is what the flake would build, compared by output path.
//!
//! Every profile's output path comes from ONE `nix eval` per attribute set (`images.*`), done
//! by the first profile that gets here and shared through [`OutPaths`]: evaluating the NixOS
//! systems dominates the cost, and they share most of nixpkgs.

use super::{slot, Artifact, Context, Kind, Outcome, Slot};
use crate::lifecycle::publish::{find_current, find_held, held_note, Family};
use crate::nix::{self, StorePath};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Why the comparison could not be made.
#[derive(Debug, thiserror::Error)]
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
    Cloud(#[from] crate::lifecycle::publish::Error),
}

/// What the cloud's current image is built from, against what the flake would build now.
#[derive(Debug, Clone)]
pub struct CloudState {
    /// The output path the flake would build.
    pub out_path: StorePath,
    /// The cloud's current image, if any.
    pub current: Option<String>,
    /// True when the current image already is that output path.
    pub unchanged: bool,
}

type Evaluation = BTreeMap<String, Result<StorePath, Arc<nix::Error>>>;

/// The output paths of every profile of the run, evaluated once on first use.
#[derive(Debug, Default)]
pub struct OutPaths(tokio::sync::OnceCell<Evaluation>);

impl OutPaths {
    async fn get(&self, ctx: &Context<'_>, flake: &str) -> &Evaluation {
        self.0.get_or_init(|| evaluate_all(ctx, flake)).await
    }
}

/// Every profile's output path: profiles are grouped by the attribute set holding their image
/// (`images` for `images.lucy`) and each group is one evaluation.
async fn evaluate_all(ctx: &Context<'_>, flake: &str) -> Evaluation {
    let mut groups: BTreeMap<&str, Vec<(&str, &str)>> = BTreeMap::new();
    for p in ctx.profiles {
        let (parent, leaf) = p
            .attribute
            .rsplit_once('.')
            .unwrap_or(("", p.attribute.as_str()));
        groups
            .entry(parent)
            .or_default()
            .push((p.name.as_str(), leaf));
    }
    let mut result = BTreeMap::new();
    for (parent, members) in groups {
        if parent.is_empty() {
            for (profile, leaf) in members {
                let got = nix::eval_out_path(&format!("{flake}#{leaf}"))
                    .await
                    .map_err(Arc::new);
                result.insert(profile.to_string(), got);
            }
            continue;
        }
        let leaves: Vec<&str> = members.iter().map(|(_, leaf)| *leaf).collect();
        match nix::eval_out_paths(flake, parent, &leaves).await {
            Ok(paths) => {
                for (profile, leaf) in members {
                    if let Some(path) = paths.get(leaf) {
                        result.insert(profile.to_string(), Ok(path.clone()));
                    }
                }
            }
            Err(e) => {
                let e = Arc::new(e);
                for (profile, _) in members {
                    result.insert(profile.to_string(), Err(Arc::clone(&e)));
                }
            }
        }
    }
    result
}

/// The stage: fills `cloud_state`, and stops the chain when nothing changed.
pub async fn run(artifact: &mut Artifact, ctx: &Context<'_>) -> Result<Outcome, super::Error> {
    let glance = ctx
        .glance
        .ok_or(super::Error::NoCloud(Kind::SkipUnchanged))?;
    let ev = slot(&artifact.evaluated, Kind::SkipUnchanged, Slot::Evaluated)?;
    let out = match ctx.out_paths.get(ctx, &ev.flake).await.get(&ev.profile) {
        Some(Ok(path)) => path.clone(),
        Some(Err(e)) => {
            return Err(Error::OutPath {
                installable: ev.installable.clone(),
                source: Arc::clone(e),
            }
            .into())
        }
        None => {
            return Err(Error::NotEvaluated {
                installable: ev.installable.clone(),
            }
            .into())
        }
    };
    let name = ctx.image_name(&ev.profile);
    let family = Family {
        profile: &ev.profile,
        name: &name,
    };
    let current = find_current(glance, &family).await.map_err(Error::from)?;
    if let Some(held) = find_held(glance, &family, out.as_str())
        .await
        .map_err(Error::from)?
    {
        let note = held_note(&family, &held.id, out.as_str(), glance.cloud());
        artifact.cloud_state = Some(CloudState {
            out_path: out,
            current: current.map(|c| c.id),
            unchanged: false,
        });
        return Ok(Outcome::Held(note));
    }
    let unchanged = current
        .as_ref()
        .is_some_and(|c| c.property(crate::lifecycle::keys::STORE_PATH) == Some(out.as_str()));
    let outcome = match &current {
        Some(cur) if unchanged => Outcome::Stop(format!(
            "{name} ({}) already is {out}; nothing to build or send",
            cur.id
        )),
        Some(cur) => Outcome::Done(Some(format!(
            "changed: {} is {}, the flake now gives {out}",
            cur.id,
            cur.property(crate::lifecycle::keys::STORE_PATH)
                .unwrap_or("(no store path)"),
        ))),
        None => Outcome::Done(Some(format!("no current `{name}` yet; will build {out}"))),
    };
    artifact.cloud_state = Some(CloudState {
        out_path: out,
        current: current.map(|c| c.id),
        unchanged,
    });
    Ok(outcome)
}
