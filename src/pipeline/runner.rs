//! The runner: one chain of stages per profile, profiles concurrent up to `concurrency`, one
//! failure never stopping the other profiles.

use super::report::{rfc3339, ImageReport, ImageStatus, Report, StageReport, StageStatus};
use super::{Plan, Project};
use crate::stage::{self, Artifact, Context, Outcome};
use futures::stream::{self, StreamExt};
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

/// Run `plan` over its profiles and report what happened.
pub async fn run(
    plan: &Plan,
    project: &Project,
    glance: Option<&crate::glance::Glance>,
    opts: &RunOptions,
) -> Report {
    let started = time::OffsetDateTime::now_utc();
    let run_dir = this_run_dir(opts, plan, started);
    let ctx = Context {
        plan,
        policy: &project.policy,
        root: &project.root,
        dry_run: opts.dry_run,
        started_at: started,
        gc_roots: run_dir.join("gc-roots"),
        glance,
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
    for stage in &ctx.plan.stages {
        if error.is_some() {
            stages.push(StageReport {
                stage: stage.name().into(),
                status: StageStatus::Skipped,
                seconds: 0.0,
                note: Some("an earlier stage failed".into()),
            });
            continue;
        }
        let t0 = Instant::now();
        let result = stage::run(stage, &mut artifact, ctx).await;
        let seconds = t0.elapsed().as_secs_f64();
        let (status, note) = match result {
            Ok(Outcome::Done(note)) => (StageStatus::Ok, note),
            Ok(Outcome::Skipped(note)) => (StageStatus::Skipped, Some(note)),
            Err(e) => {
                cleanup_failed |= matches!(&e, stage::Error::Upload(u) if u.cleanup_failed());
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
        image_id: artifact.published.as_ref().map(|p| p.image_id.clone()),
        bytes_sent: artifact.published.as_ref().map_or(0, |p| p.bytes_sent),
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
