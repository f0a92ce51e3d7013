//! What a run does once for all its profiles: ONE evaluation of every image's derivation and
//! output path, each profile's `skip-unchanged` decision, and ONE `nix build` of every image
//! that is to be built.
//!
//! Evaluating the NixOS systems dominates the cost of a build that has little to do, and the
//! systems share most of nixpkgs; one `nix build` of all images also lets Nix schedule them
//! together over its remote builders. The chains still run per profile (one failed image never
//! stops the others): the first chain that needs a result computes it for every profile, and
//! the others find it done. A profile that `skip-unchanged` stops is left out of the build, so
//! an unchanged image is never built.

use super::build::{self, Built};
use super::skip_unchanged::{self, Decision, Next};
use super::{Context, Evaluated};
use crate::firmware::Boot;
use crate::nix::{self, Derivation, Realised};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::OnceCell;

type Evaluation = BTreeMap<String, Result<Derivation, Arc<nix::Error>>>;
type Builds = BTreeMap<String, Result<Built, build::Error>>;

/// The shared results of one run.
#[derive(Debug)]
pub struct Batch {
    evaluation: OnceCell<Evaluation>,
    decisions: BTreeMap<String, OnceCell<Result<Decision, skip_unchanged::Error>>>,
    builds: OnceCell<Builds>,
    skip_unchanged: bool,
}

impl Batch {
    /// For a run of `profiles`; `skip_unchanged` when the pipeline has that stage, so the
    /// build leaves out what it stops.
    pub fn new(profiles: &[crate::profile::Profile], skip_unchanged: bool) -> Self {
        Batch {
            evaluation: OnceCell::new(),
            decisions: profiles
                .iter()
                .map(|p| (p.name.clone(), OnceCell::new()))
                .collect(),
            builds: OnceCell::new(),
            skip_unchanged,
        }
    }

    async fn evaluation(&self, ctx: &Context<'_>, flake: &str) -> &Evaluation {
        self.evaluation
            .get_or_init(|| evaluate_all(ctx, flake))
            .await
    }

    /// The derivation of `ev`'s image, from the run's one evaluation.
    async fn derivation(
        &self,
        ctx: &Context<'_>,
        ev: &Evaluated,
    ) -> Result<Derivation, skip_unchanged::Error> {
        match self.evaluation(ctx, &ev.flake).await.get(&ev.profile) {
            Some(Ok(d)) => Ok(d.clone()),
            Some(Err(e)) => Err(skip_unchanged::Error::OutPath {
                installable: ev.installable.clone(),
                source: Arc::clone(e),
            }),
            None => Err(skip_unchanged::Error::NotEvaluated {
                installable: ev.installable.clone(),
            }),
        }
    }

    /// `skip-unchanged`'s decision for `ev`'s profile, made once.
    pub async fn decision(
        &self,
        ctx: &Context<'_>,
        ev: &Evaluated,
    ) -> Result<Decision, super::Error> {
        let glance = ctx
            .glance()
            .ok_or(super::Error::NoCloud(super::Kind::SkipUnchanged))?;
        let Some(cell) = self.decisions.get(&ev.profile) else {
            return Err(skip_unchanged::Error::NotEvaluated {
                installable: ev.installable.clone(),
            }
            .into());
        };
        let decided = cell
            .get_or_init(|| async {
                let derivation = self.derivation(ctx, ev).await?;
                skip_unchanged::decide(glance, ctx, &ev.profile, derivation.out).await
            })
            .await;
        Ok(decided.clone()?)
    }

    /// `ev`'s built image, from the run's one `nix build`.
    pub async fn built(
        &self,
        ctx: &Context<'_>,
        ev: &Evaluated,
        timeout: Duration,
    ) -> Result<Built, build::Error> {
        let builds = self
            .builds
            .get_or_init(|| self.build_all(ctx, &ev.flake, timeout))
            .await;
        match builds.get(&ev.profile) {
            Some(result) => result.clone(),
            None => Err(build::Error::NotInBatch {
                installable: ev.installable.clone(),
            }),
        }
    }

    /// Evaluates (once), asks each profile's decision when the pipeline skips unchanged
    /// images, and builds the rest in one `nix build`.
    async fn build_all(&self, ctx: &Context<'_>, flake: &str, timeout: Duration) -> Builds {
        let mut builds = Builds::new();
        let mut wanted: Vec<(&crate::profile::Profile, String, Derivation)> = Vec::new();
        for profile in ctx.profiles {
            let ev = match super::evaluate::evaluate(profile, ctx.policy, ctx.flake, ctx.root) {
                Ok(ev) => ev,
                // Its own chain reports this at `evaluate` and never reaches the build.
                Err(_) => continue,
            };
            if self.skip_unchanged {
                match self.decision(ctx, &ev).await {
                    Ok(d) if d.next == Next::Build => {}
                    // Stopped or failed at skip-unchanged: its chain never reaches the build.
                    _ => continue,
                }
            }
            match self.derivation(ctx, &ev).await {
                Ok(d) => wanted.push((profile, ev.installable, d)),
                Err(e) => {
                    let source = match e {
                        skip_unchanged::Error::OutPath { source, .. } => source,
                        other => Arc::new(nix::Error::Unexpected {
                            argv: format!("nix eval {flake}"),
                            problem: other.to_string(),
                        }),
                    };
                    builds.insert(
                        profile.name.clone(),
                        Err(build::Error::Nix {
                            installable: ev.installable,
                            source,
                        }),
                    );
                }
            }
        }
        if wanted.is_empty() {
            return builds;
        }
        let link = match ctx.gc_roots.link("image") {
            Ok(link) => link,
            Err(source) => {
                let source = Arc::new(source);
                for (profile, _, _) in wanted {
                    builds.insert(
                        profile.name.clone(),
                        Err(build::Error::RunDir {
                            path: ctx.gc_roots.dir().to_path_buf(),
                            source: Arc::clone(&source),
                        }),
                    );
                }
                return builds;
            }
        };
        let drvs: Vec<nix::StorePath> = wanted.iter().map(|(_, _, d)| d.drv.clone()).collect();
        match ctx.nix.build_derivations(&drvs, &link, timeout).await {
            Ok(realised) => {
                for (profile, installable, d) in wanted {
                    let result = match realised.get(&d.drv) {
                        Some(r) => finish(ctx, profile, &installable, r).await,
                        None => Err(build::Error::NotInBatch { installable }),
                    };
                    builds.insert(profile.name.clone(), result);
                }
            }
            Err(e) => {
                let named = nix::failed_derivations(&e);
                let attributable = matches!(e, nix::Error::Failed { .. });
                let shared = Arc::new(e);
                for (profile, installable, d) in wanted {
                    let result = if attributable && !named.contains(d.drv.as_str()) {
                        // The batch failed for another image: this one's build either
                        // finished (`--keep-going`) and is found at once, or fails on its own.
                        build_alone(ctx, profile, &installable, &d, timeout).await
                    } else {
                        Err(build::Error::Nix {
                            installable,
                            source: Arc::clone(&shared),
                        })
                    };
                    builds.insert(profile.name.clone(), result);
                }
            }
        }
        builds
    }
}

/// One image's own `nix build`, after the batch failed for another image.
async fn build_alone(
    ctx: &Context<'_>,
    profile: &crate::profile::Profile,
    installable: &str,
    d: &Derivation,
    timeout: Duration,
) -> Result<Built, build::Error> {
    let fail = |source: nix::Error| build::Error::Nix {
        installable: installable.to_string(),
        source: Arc::new(source),
    };
    let link = ctx
        .gc_roots
        .link(&profile.name)
        .map_err(|source| build::Error::RunDir {
            path: ctx.gc_roots.dir().to_path_buf(),
            source: Arc::new(source),
        })?;
    let realised = ctx
        .nix
        .build_derivations(std::slice::from_ref(&d.drv), &link, timeout)
        .await
        .map_err(fail)?;
    match realised.get(&d.drv) {
        Some(r) => finish(ctx, profile, installable, r).await,
        None => Err(build::Error::NotInBatch {
            installable: installable.to_string(),
        }),
    }
}

/// What the pipeline needs of a built image: where it is on this machine, what the output says
/// about it, and Nix's registered NAR hash.
async fn finish(
    ctx: &Context<'_>,
    profile: &crate::profile::Profile,
    installable: &str,
    realised: &Realised,
) -> Result<Built, build::Error> {
    let fail = |source: nix::Error| build::Error::Nix {
        installable: installable.to_string(),
        source: Arc::new(source),
    };
    let out = &realised.output.out;
    let output_dir = ctx.nix.settings().real_path(out.as_path());
    let image = nix::read_image_info(&output_dir).map_err(fail)?;
    if let Some(declared) = image.boot_mode.map(Boot::from) {
        if declared != profile.boot {
            return Err(build::Error::DeclaredFirmware {
                profile: profile.name.clone(),
                declared,
                expected: profile.boot,
            });
        }
    }
    let info = ctx.nix.path_info(out).await.map_err(fail)?;
    Ok(Built {
        store_path: out.clone(),
        output_dir,
        gc_root: realised.link.clone(),
        image,
        nar_hash: info.nar_hash,
        nar_size: info.nar_size,
        generation: crate::lifecycle::generation(ctx.started_at, out),
    })
}

/// Every profile's derivation: profiles are grouped by the attribute set holding their image
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
                let got = ctx
                    .nix
                    .eval_derivation(&format!("{flake}#{leaf}"))
                    .await
                    .map_err(Arc::new);
                result.insert(profile.to_string(), got);
            }
            continue;
        }
        let leaves: Vec<&str> = members.iter().map(|(_, leaf)| *leaf).collect();
        match ctx.nix.eval_derivations(flake, parent, &leaves).await {
            Ok(found) => {
                for (profile, leaf) in members {
                    if let Some(d) = found.get(leaf) {
                        result.insert(profile.to_string(), Ok(d.clone()));
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
