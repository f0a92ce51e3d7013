//! The runner: one chain of stages per profile, profiles concurrent up to `concurrency`, one
//! failure never stopping the other profiles.

use super::report::{rfc3339, ImageReport, ImageStatus, Report, StageReport, StageStatus};
use super::{Plan, Project};
use crate::stage::{self, Artifact, Context, Outcome, Stage};
use futures::stream::{self, StreamExt};
use std::time::Instant;

/// How a run behaves.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Run only what has no side effect; describe the rest.
    pub dry_run: bool,
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
pub async fn run(plan: &Plan, project: &Project, opts: &RunOptions) -> Report {
    let started = time::OffsetDateTime::now_utc();
    let ctx = Context {
        plan,
        policy: &project.policy,
        root: &project.root,
        dry_run: opts.dry_run,
        started_at: started,
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
    } else if ctx
        .plan
        .stages
        .iter()
        .any(|s| matches!(s, Stage::Upload(_)))
    {
        ImageStatus::Published
    } else {
        ImageStatus::Verified
    };
    let (properties, tags) = match &artifact.properties {
        Some(t) => (t.properties.clone(), t.tags.clone()),
        None => Default::default(),
    };
    ImageReport {
        profile,
        status,
        firmware: artifact.profile.boot,
        image_id: None,
        image_name: None,
        store_path: None,
        size: None,
        sha256: None,
        sha512: None,
        md5: None,
        properties,
        tags,
        stages,
        error,
    }
}
