//! The runner: one chain of stages per profile, profiles concurrent up to `concurrency`, one
//! failure never stopping the other profiles.

use super::report::{rfc3339, ImageReport, ImageStatus, Report, StageReport, StageStatus};
use super::{Plan, Project};
use crate::nix::StorePath;
use crate::stage::{self, evaluate, Artifact, Context, Outcome, Stage};
use futures::stream::{self, StreamExt};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

/// How a run behaves.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Run only what has no side effect; describe the rest.
    pub dry_run: bool,
    /// Where runs keep their working files; this run uses a fresh directory inside it.
    pub run_dir: PathBuf,
    /// Keep the build outputs' GC roots after the run (otherwise they are removed, so the
    /// next `nix-collect-garbage` may reclaim the images).
    pub keep_outputs: bool,
    /// Draw progress bars instead of log lines.
    pub progress_bars: bool,
}

/// The authenticated cloud sessions a run uses.
#[derive(Debug, Default)]
pub struct Clouds {
    /// The pipeline's cloud (`upload`, target of `promote`).
    pub target: Option<crate::glance::Glance>,
    /// The cloud `promote` copies from.
    pub source: Option<crate::glance::Glance>,
}

/// The directory of one run: `<run_dir>/<UTC start>-<pipeline>-<pid>`.
fn this_run_dir(opts: &RunOptions, plan: &Plan, started: time::OffsetDateTime) -> PathBuf {
    let stamp = rfc3339(started).replace([':', '-'], "");
    opts.run_dir
        .join(format!("{stamp}-{}-{}", plan.pipeline, std::process::id()))
}

/// The error chain of `err` as one line: "outer: inner: root cause".
pub fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        out.push_str(": ");
        out.push_str(&cause.to_string());
        source = cause.source();
    }
    out
}

/// The output paths of every profile's image, without building: one `nix eval` per flake
/// attribute set (`images.*`), since one evaluation of all systems shares most of the work.
async fn evaluate_out_paths(
    plan: &Plan,
    project: &Project,
) -> BTreeMap<String, Result<StorePath, String>> {
    let mut result = BTreeMap::new();
    let flake = match evaluate::flake_ref(&project.root, plan.flake.as_deref()) {
        Ok(f) => f,
        Err(e) => {
            for p in &plan.profiles {
                result.insert(p.name.clone(), Err(e.to_string()));
            }
            return result;
        }
    };
    let mut groups: BTreeMap<&str, Vec<(&str, &str)>> = BTreeMap::new();
    for p in &plan.profiles {
        let (parent, leaf) = p
            .attribute
            .rsplit_once('.')
            .unwrap_or(("", p.attribute.as_str()));
        groups
            .entry(parent)
            .or_default()
            .push((p.name.as_str(), leaf));
    }
    for (parent, members) in groups {
        if parent.is_empty() {
            for (profile, leaf) in members {
                let got = crate::nix::eval_out_path(&format!("{flake}#{leaf}"))
                    .await
                    .map_err(|e| error_chain(&e));
                result.insert(profile.to_string(), got);
            }
            continue;
        }
        let leaves: Vec<&str> = members.iter().map(|(_, leaf)| *leaf).collect();
        match crate::nix::eval_out_paths(&flake, parent, &leaves).await {
            Ok(paths) => {
                for (profile, leaf) in members {
                    let got = paths
                        .get(leaf)
                        .cloned()
                        .ok_or_else(|| format!("{parent}.{leaf} was not in the evaluation"));
                    result.insert(profile.to_string(), got);
                }
            }
            Err(e) => {
                let text = error_chain(&e);
                for (profile, _) in members {
                    result.insert(profile.to_string(), Err(text.clone()));
                }
            }
        }
    }
    result
}

/// Run `plan` over its profiles and report what happened.
pub async fn run(plan: &Plan, project: &Project, clouds: &Clouds, opts: &RunOptions) -> Report {
    let started = time::OffsetDateTime::now_utc();
    let run_dir = this_run_dir(opts, plan, started);
    let wants_out_paths = !opts.dry_run
        && plan
            .stages
            .iter()
            .any(|s| matches!(s, Stage::SkipUnchanged));
    let out_paths = if wants_out_paths {
        evaluate_out_paths(plan, project).await
    } else {
        BTreeMap::new()
    };
    let ctx = Context {
        plan,
        policy: &project.policy,
        root: &project.root,
        dry_run: opts.dry_run,
        started_at: started,
        gc_roots: run_dir.join("gc-roots"),
        run_dir: run_dir.clone(),
        out_paths: &out_paths,
        glance: clouds.target.as_ref(),
        source: clouds.source.as_ref(),
        progress_bars: opts.progress_bars,
    };
    let mut images: Vec<(usize, ImageReport)> = stream::iter(plan.profiles.iter().enumerate())
        .map(|(i, profile)| {
            let ctx = &ctx;
            async move { (i, run_chain(Artifact::new(profile.clone()), ctx).await) }
        })
        .buffer_unordered(plan.concurrency.max(1))
        .collect()
        .await;
    images.sort_by_key(|(i, _)| *i);
    if opts.keep_outputs {
        if ctx.gc_roots.exists() {
            tracing::info!(
                "build outputs kept alive by the GC roots in {}",
                ctx.gc_roots.display()
            );
        }
    } else {
        // Removing the out-links ends the GC roots; the directory is ours alone.
        if let Err(e) = std::fs::remove_dir_all(&ctx.gc_roots) {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(
                    "could not remove the GC roots in {}: {e}",
                    ctx.gc_roots.display()
                );
            }
        }
        // Leaves the run directory when something else (a serial log) is still in it.
        let _ = std::fs::remove_dir(&run_dir);
    }
    let images: Vec<ImageReport> = images.into_iter().map(|(_, r)| r).collect();
    Report {
        pipeline: plan.pipeline.clone(),
        cloud: plan.cloud.clone(),
        ok: images.iter().all(|i| i.status != ImageStatus::Failed),
        dry_run: opts.dry_run,
        started_at: rfc3339(started),
        finished_at: rfc3339(time::OffsetDateTime::now_utc()),
        images,
    }
}

async fn run_chain(mut artifact: Artifact, ctx: &Context<'_>) -> ImageReport {
    let profile = artifact.profile.name.clone();
    let mut stages = Vec::new();
    let mut error = None;
    let mut cleanup_failed = false;
    let mut stopped: Option<String> = None;
    for stage in &ctx.plan.stages {
        if error.is_some() || stopped.is_some() {
            stages.push(StageReport {
                stage: stage.name().into(),
                status: StageStatus::Skipped,
                seconds: 0.0,
                note: Some(if error.is_some() {
                    "an earlier stage failed".into()
                } else {
                    "unchanged".into()
                }),
            });
            continue;
        }
        let t0 = Instant::now();
        let result = stage::run(stage, &mut artifact, ctx).await;
        let seconds = t0.elapsed().as_secs_f64();
        let (status, note) = match result {
            Ok(Outcome::Done(note)) => (StageStatus::Ok, note),
            Ok(Outcome::Skipped(note)) => (StageStatus::Skipped, Some(note)),
            Ok(Outcome::Stop(note)) => {
                stopped = Some(note.clone());
                (StageStatus::Ok, Some(note))
            }
            Err(e) => {
                cleanup_failed |= match &e {
                    stage::Error::Upload(u) => u.cleanup_failed(),
                    stage::Error::Promote(p) => p.cleanup_failed(),
                    _ => false,
                };
                let chain = error_chain(&e);
                tracing::error!("{profile}: {chain}");
                error = Some(chain);
                (StageStatus::Failed, None)
            }
        };
        tracing::info!(
            "{profile}: {} {} ({seconds:.2}s){}",
            stage.name(),
            format!("{status:?}").to_lowercase(),
            note.as_deref()
                .map(|n| format!(": {n}"))
                .unwrap_or_default()
        );
        stages.push(StageReport {
            stage: stage.name().into(),
            status,
            seconds,
            note,
        });
    }
    let status = if error.is_some() {
        ImageStatus::Failed
    } else if ctx.dry_run {
        ImageStatus::Planned
    } else if stopped.is_some() {
        ImageStatus::Unchanged
    } else {
        match &artifact.published {
            Some(p) if p.skipped => ImageStatus::Skipped,
            Some(_) => ImageStatus::Published,
            None => ImageStatus::Verified,
        }
    };
    let (properties, tags) = match &artifact.properties {
        Some(t) => (t.properties.clone(), t.tags.clone()),
        None => Default::default(),
    };
    let digests = artifact.verified.as_ref().map(|v| &v.digests);
    ImageReport {
        image_name: Some(ctx.plan.image_name(&profile)),
        profile,
        status,
        firmware: artifact.profile.boot,
        image_id: artifact
            .published
            .as_ref()
            .map(|p| p.image_id.clone())
            .or_else(|| artifact.unchanged.clone()),
        bytes_sent: artifact.bytes_sent,
        boot_seconds: artifact.booted.as_ref().map(|b| b.seconds),
        cleanup_failed,
        store_path: artifact
            .build
            .as_ref()
            .map(|b| b.store_path.as_str().to_string()),
        size: digests.map(|d| d.size),
        sha256: digests.map(|d| d.sha256.clone()),
        sha512: digests.map(|d| d.sha512.clone()),
        md5: digests.map(|d| d.md5.clone()),
        properties,
        tags,
        stages,
        error,
    }
}
