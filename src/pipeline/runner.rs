//! The runner: one chain of stages per profile, profiles concurrent up to `concurrency`, one
//! failure never stopping the other profiles.

use super::report::{
    rfc3339, CloudReport, ImageOutcome, ImageReport, Report, StageReport, StageStatus,
};
use super::run_dir::RunDir;
use super::{Plan, Project};
use crate::error::error_chain;
use crate::glance::Glance;
use crate::nix::GcRoots;
use crate::progress::Reporter;
use crate::stage::{self, batch::Batch, Artifact, Context, Outcome, Stage};
use futures::stream::{self, StreamExt};
use std::time::Instant;

/// How a run behaves.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Run only what has no side effect; describe the rest.
    pub dry_run: bool,
    /// Where runs keep their working files; this run uses a fresh directory inside it.
    pub run_dir: RunDir,
    /// Keep the build outputs' GC roots after the run (otherwise they are removed, so the
    /// next `nix-collect-garbage` may reclaim the images).
    pub keep_outputs: bool,
    /// Shows transfers.
    pub reporter: Reporter,
    /// Where boot proofs are remembered (`None`: boot every image).
    pub boot_cache: Option<std::path::PathBuf>,
}

/// The authenticated cloud sessions a run uses.
#[derive(Debug, Default)]
pub struct Clouds {
    /// The pipeline's clouds, in its order (`upload` publishes into each; `promote` and
    /// `skip-unchanged` take one).
    pub targets: Vec<Glance>,
    /// The cloud `promote` copies from.
    pub source: Option<Glance>,
}

/// Run `plan` over its profiles and report what happened.
pub async fn run(plan: &Plan, project: &Project, clouds: &Clouds, opts: &RunOptions) -> Report {
    let started = time::OffsetDateTime::now_utc();
    if !opts.dry_run {
        let runs = opts.run_dir.clone();
        let pruned =
            tokio::task::spawn_blocking(move || runs.prune(crate::pipeline::run_dir::KEEP_RUNS))
                .await
                .unwrap_or_default();
        for old in pruned {
            tracing::debug!("deleted the old run directory {}", old.display());
        }
    }
    let run_dir = opts.run_dir.for_run(&plan.pipeline, started);
    let gc_roots = GcRoots::new(run_dir.join("gc-roots"));
    let has_skip = plan
        .stages
        .iter()
        .any(|s| matches!(s, Stage::SkipUnchanged));
    let batch = Batch::new(&plan.profiles, has_skip);
    let nix = crate::nix::Nix::default().with_settings(plan.nix_settings());
    let ctx = Context {
        pipeline: &plan.pipeline,
        flake: plan.flake.as_deref(),
        root: &project.root,
        name_template: plan.name_template(),
        keep: plan.keep(),
        policy: &project.policy,
        profiles: &plan.profiles,
        dry_run: opts.dry_run,
        started_at: started,
        gc_roots: &gc_roots,
        run_dir: &run_dir,
        clouds: &plan.clouds,
        targets: &clouds.targets,
        upload_hashes: plan.stages.iter().any(|s| matches!(s, Stage::Upload(_))),
        source: clouds.source.as_ref(),
        reporter: &opts.reporter,
        batch: &batch,
        nix: &nix,
        boot_cache: opts.boot_cache.as_deref(),
    };
    let mut images: Vec<(usize, ImageReport)> = stream::iter(plan.profiles.iter().enumerate())
        .map(|(i, profile)| {
            let ctx = &ctx;
            async move {
                (
                    i,
                    run_chain(plan, Artifact::new(profile.clone()), ctx).await,
                )
            }
        })
        .buffer_unordered(plan.concurrency.max(1))
        .collect()
        .await;
    images.sort_by_key(|(i, _)| *i);
    if opts.keep_outputs {
        if gc_roots.exist() {
            tracing::info!(
                "build outputs kept alive by the GC roots in {}",
                gc_roots.dir().display()
            );
        }
    } else {
        if let Err(e) = gc_roots.release() {
            tracing::warn!(
                "could not remove the GC roots in {}: {e}",
                gc_roots.dir().display()
            );
        }
        // Leaves the run directory when something else (a serial log) is still in it.
        let _ = std::fs::remove_dir(&run_dir);
    }
    let images: Vec<ImageReport> = images.into_iter().map(|(_, r)| r).collect();
    Report {
        pipeline: plan.pipeline.clone(),
        cloud: plan.cloud().map(str::to_string),
        clouds: plan.clouds.clone(),
        ok: images.iter().all(|i| i.status != ImageOutcome::Failed),
        dry_run: opts.dry_run,
        started_at: rfc3339(started),
        finished_at: rfc3339(time::OffsetDateTime::now_utc()),
        images,
    }
}

async fn run_chain(plan: &Plan, mut artifact: Artifact, ctx: &Context<'_>) -> ImageReport {
    let profile = artifact.profile.name.clone();
    let mut stages = Vec::new();
    let mut error = None;
    let mut cleanup_failed = false;
    let mut stopped: Option<String> = None;
    let mut held: Option<String> = None;
    for stage in &plan.stages {
        if error.is_some() || stopped.is_some() {
            stages.push(StageReport {
                stage: stage.name().into(),
                status: StageStatus::Skipped,
                seconds: 0.0,
                note: Some(if error.is_some() {
                    "an earlier stage failed".into()
                } else if held.is_some() {
                    "held".into()
                } else if artifact.published.is_some() {
                    "already in the cloud".into()
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
            Ok(Outcome::Cached(note)) => (StageStatus::Cached, Some(note)),
            Ok(Outcome::Stop(note)) => {
                stopped = Some(note.clone());
                (StageStatus::Ok, Some(note))
            }
            Ok(Outcome::Held(note)) => {
                stopped = Some(note.clone());
                held = Some(note.clone());
                (StageStatus::Ok, Some(note))
            }
            Err(e) => {
                cleanup_failed |= e.cleanup_failed();
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
    let clouds: Vec<CloudReport> = artifact.clouds.iter().map(cloud_report).collect();
    let status = if error.is_some() {
        ImageOutcome::Failed
    } else if ctx.dry_run {
        ImageOutcome::Planned
    } else if held.is_some() {
        ImageOutcome::Held
    } else if stopped.is_some() && artifact.published.is_none() {
        ImageOutcome::Unchanged
    } else {
        let sent_somewhere = clouds.iter().any(|c| c.status == ImageOutcome::Published);
        match &artifact.published {
            Some(p) if p.skipped && !sent_somewhere => ImageOutcome::Skipped,
            Some(_) => ImageOutcome::Published,
            None => ImageOutcome::Verified,
        }
    };
    let digests = artifact.digests.as_ref();
    let (mut properties, tags) = match &artifact.properties {
        Some(t) => (t.properties.clone(), t.tags.clone()),
        None => Default::default(),
    };
    // The upload adds the digest properties; the report shows them as soon as they are known.
    if let (Some(d), true) = (digests, artifact.properties.is_some()) {
        for (k, v) in stage::tag::digest_properties(d) {
            properties.insert(k.to_string(), v);
        }
    }
    ImageReport {
        image_name: Some(ctx.image_name(&profile)),
        profile,
        status,
        firmware: artifact.profile.boot,
        image_id: artifact
            .published
            .as_ref()
            .map(|p| p.image_id.clone())
            .or_else(|| {
                artifact
                    .cloud_state
                    .as_ref()
                    .filter(|c| c.unchanged)
                    .and_then(|c| c.current.clone())
            }),
        bytes_sent: artifact.bytes_sent,
        image_built_at: match &artifact.published {
            Some(p) if p.skipped => p.built_at,
            Some(p) => p
                .built_at
                .or(artifact.build.as_ref().map(|_| ctx.started_at)),
            None => artifact
                .cloud_state
                .as_ref()
                .and_then(|c| c.current_built_at),
        }
        .map(rfc3339),
        boot_seconds: match &artifact.booted {
            Some(stage::boot_check::Booted::Proven(b)) => Some(b.seconds),
            _ => None,
        },
        boot_metadata: match &artifact.booted {
            Some(stage::boot_check::Booted::Proven(b)) => Some(b.metadata),
            _ => None,
        },
        boot_hostname: match &artifact.booted {
            Some(stage::boot_check::Booted::Proven(b)) => {
                b.config_drive.as_ref().map(|d| d.identity.hostname.clone())
            }
            _ => None,
        },
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
        clouds,
        held,
        error,
    }
}

fn cloud_report(c: &stage::CloudResult) -> CloudReport {
    let (status, image_id, cleanup_failed, held, error) = match &c.outcome {
        stage::CloudOutcome::Published(p) if p.skipped => (
            ImageOutcome::Skipped,
            Some(p.image_id.clone()),
            false,
            None,
            None,
        ),
        stage::CloudOutcome::Published(p) => (
            ImageOutcome::Published,
            Some(p.image_id.clone()),
            false,
            None,
            None,
        ),
        stage::CloudOutcome::Held(note) => {
            (ImageOutcome::Held, None, false, Some(note.clone()), None)
        }
        stage::CloudOutcome::Failed {
            error,
            cleanup_failed,
        } => (
            ImageOutcome::Failed,
            None,
            *cleanup_failed,
            None,
            Some(error.clone()),
        ),
    };
    CloudReport {
        cloud: c.cloud.clone(),
        status,
        image_id,
        bytes_sent: c.bytes_sent,
        cleanup_failed,
        held,
        error,
    }
}
