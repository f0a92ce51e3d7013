//! `upload`: publishes the verified image file into every target cloud through the image
//! family's candidate protocol ([`crate::lifecycle::publish`]), then applies retention.
//!
//! The file is read once, however many clouds receive it ([`crate::image::stream`]): that
//! read recomputes the store output's NAR hash and the md5/sha256/sha512 of the bytes while
//! they stream, and fans the chunks out to one upload per cloud. Each cloud gets its own
//! candidate, hash comparison and make-current; a candidate becomes current only when
//! Glance's size and hash, the digests of the bytes sent and Nix's narHash all agree. A
//! failure in one cloud leaves the others' results as they are, and is reported per cloud.

use super::{slot, Artifact, CloudOutcome, CloudResult, Context, Error as StageError, Kind};
use super::{Outcome, Slot};
use crate::error::error_chain;
use crate::glance::{self, Glance, NewImage, Visibility};
use crate::image::digest::Digests;
use crate::image::nar::StoreOutput;
use crate::image::stream::{self, Source};
use crate::lifecycle::publish::{self, Family, Publish, Published};
use crate::lifecycle::{keys, retention, DEFAULT_KEEP};
use crate::progress::Progress;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub use crate::lifecycle::publish::Error;

/// Default seconds to wait for `active`.
pub const DEFAULT_TIMEOUT: u64 = 600;
/// Default attempts on transient failures.
pub const DEFAULT_ATTEMPTS: u32 = 3;
/// Default seconds to keep trying to delete a failed candidate.
pub const DEFAULT_CLEANUP_TIMEOUT: u64 = 120;

/// How the upload stage sends the bytes.
#[derive(
    Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum UploadMethod {
    /// `PUT /v2/images/{id}/file`: the bytes are stored as they arrive, hashed once by Glance.
    #[default]
    Direct,
    /// `PUT /v2/images/{id}/stage` then a `glance-direct` import.
    Import,
    /// `import` when the cloud offers glance-direct (`GET /v2/info/import`), else `direct`.
    Auto,
}

/// Options of the `upload` stage.
#[derive(Debug, Default, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "UploadOptions")]
pub struct Options {
    /// Name of the current image; `{profile}` is replaced (default `hephaestus-{profile}`).
    #[serde(default)]
    pub name: Option<String>,
    /// How the bytes are sent (default `direct`).
    #[serde(default)]
    pub method: Option<UploadMethod>,
    /// Seconds to wait for the image to become `active` (default 600).
    #[serde(default)]
    pub timeout: Option<u64>,
    /// Glance visibility of published images (default `private`).
    #[serde(default)]
    pub visibility: Option<Visibility>,
    /// Project ids the images are shared with (needs `visibility: shared`); each project
    /// accepts the image on its side, as Glance's image-sharing flow asks.
    #[serde(default)]
    pub members: Option<Vec<String>>,
    /// Attempts at publishing when Glance fails transiently (5xx, 429, connection lost),
    /// each on a fresh candidate because Glance cannot resume an upload (default 3).
    #[serde(default)]
    pub attempts: Option<u32>,
    /// Seconds to keep trying to delete a failed candidate before giving up with exit code 3
    /// (default 120: long enough for a restarted Glance to come back).
    #[serde(default)]
    pub cleanup_timeout: Option<u64>,
    /// Generations of the profile kept after a publish, the current one included (default
    /// 3); current, previous, protected and `keep`-tagged images are never deleted.
    #[serde(default)]
    pub keep: Option<u32>,
}

/// Publishing into some of several clouds failed; the others' results stand.
#[derive(Debug, thiserror::Error)]
#[error("{}", describe_failures(failed, succeeded))]
pub struct CloudsFailed {
    /// Each failed cloud and why.
    pub failed: Vec<(String, Error)>,
    /// The clouds where the image is current (published, or already there).
    pub succeeded: Vec<String>,
}

impl CloudsFailed {
    /// True when any cloud may hold a half-made image.
    pub fn cleanup_failed(&self) -> bool {
        self.failed.iter().any(|(_, e)| e.cleanup_failed())
    }
}

fn describe_failures(failed: &[(String, Error)], succeeded: &[String]) -> String {
    let each: Vec<String> = failed
        .iter()
        .map(|(cloud, e)| format!("cloud `{cloud}`: {}", error_chain(e)))
        .collect();
    let done = if succeeded.is_empty() {
        String::new()
    } else {
        format!(
            " (current in {}, left as it is)",
            succeeded
                .iter()
                .map(|c| format!("`{c}`"))
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    format!(
        "{} of {} clouds failed: {}{done}",
        failed.len(),
        failed.len() + succeeded.len(),
        each.join("; ")
    )
}

/// Publish the artifact's verified image into every target cloud of the context.
pub async fn run(
    options: &Options,
    artifact: &mut Artifact,
    ctx: &Context<'_>,
) -> Result<Outcome, StageError> {
    if ctx.targets.is_empty() {
        return Err(StageError::NoCloud(Kind::Upload));
    }
    let ev = slot(&artifact.evaluated, Kind::Upload, Slot::Evaluated)?;
    let built = slot(&artifact.build, Kind::Upload, Slot::Build)?;
    let verified = slot(&artifact.verified, Kind::Upload, Slot::Verified)?;
    let tagging = slot(&artifact.properties, Kind::Upload, Slot::Properties)?;
    // Proven, or skipped on purpose: either way the pipeline decided before anything is sent.
    slot(&artifact.booted, Kind::Upload, Slot::Booted)?;
    let name = ctx.image_name(&ev.profile);
    let profile = ev.profile.clone();

    // The sdk's hashes are recorded only once Glance's hashes agree with the bytes sent.
    let mut properties = tagging.properties.clone();
    let late_properties: BTreeMap<String, String> = properties
        .iter()
        .filter(|(k, _)| k.starts_with(keys::SDK_PREFIX))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    properties.retain(|k, _| !k.starts_with(keys::SDK_PREFIX));
    // `min_disk` can never be smaller than the virtual disk, or Nova would refuse to boot it.
    let disk_gib = verified.qcow2.virtual_size.div_ceil(1 << 30);
    let spec = Publish {
        family: Family {
            profile: &ev.profile,
            name: &name,
        },
        store_path: built.store_path.as_str(),
        generation: &built.generation,
        image: NewImage {
            name: String::new(),
            disk_format: "qcow2".into(),
            container_format: "bare".into(),
            visibility: Some(options.visibility.unwrap_or(Visibility::Private)),
            os_hidden: true,
            tags: Vec::new(),
            min_disk: Some(ev.min_disk.unwrap_or(0).max(disk_gib)),
            // SCS-0102 makes min_ram mandatory.
            min_ram: Some(ev.min_ram.unwrap_or(crate::scs::DEFAULT_MIN_RAM)),
            properties,
        },
        tags: tagging.tags.clone(),
        members: options.members.clone().unwrap_or_default(),
        expected: None,
        late_properties,
        attempts: options.attempts.unwrap_or(DEFAULT_ATTEMPTS),
        active_timeout: Duration::from_secs(options.timeout.unwrap_or(DEFAULT_TIMEOUT)),
        cleanup_timeout: Duration::from_secs(
            options.cleanup_timeout.unwrap_or(DEFAULT_CLEANUP_TIMEOUT),
        ),
    };

    // Clouds the build stage found already holding this build, or holding it back, are done.
    let pending: Vec<&Glance> = ctx
        .targets
        .iter()
        .filter(|g| !artifact.clouds.iter().any(|c| c.cloud == g.cloud()))
        .collect();
    if pending.is_empty() {
        return Ok(Outcome::Done(Some(
            "every target cloud already holds this build; nothing sent".into(),
        )));
    }
    let store = StoreOutput {
        path: built.output_dir.clone(),
        nar_hash: built.nar_hash.clone(),
    };
    let source = Source::start(verified.file.clone(), Some(store), pending.len()).map_err(|e| {
        Error::Data {
            what: format!("read {}", verified.file.display()),
            source: Box::new(e),
        }
    })?;
    let several = ctx.targets.len() > 1;
    let method = options.method.unwrap_or_default();
    let size = verified.size;
    let read: Mutex<Option<Digests>> = Mutex::new(None);
    let outcomes = futures::future::join_all(pending.iter().enumerate().map(|(lane, glance)| {
        let (spec, source, read) = (&spec, &source, &read);
        let label = if several {
            format!("{profile}→{}", glance.cloud())
        } else {
            profile.clone()
        };
        async move {
            let progress = Progress::default();
            let ticker = ctx.reporter.track(&label, size, progress.clone());
            let result = publish::publish(glance, spec, |id| {
                send(
                    glance,
                    method,
                    source,
                    lane,
                    id,
                    progress.clone(),
                    spec.active_timeout,
                    read,
                )
            })
            .await;
            // Whatever happened, the shared read must not wait for this cloud any longer.
            source.release(lane);
            ticker.finish();
            let result = match result {
                Ok(published) if !published.skipped => {
                    let keep = options.keep.unwrap_or(DEFAULT_KEEP);
                    let retention = retention::after_publish(
                        glance,
                        spec.family.profile,
                        spec.family.name,
                        keep,
                    )
                    .await;
                    Ok((published, retention))
                }
                Ok(published) => Ok((published, String::new())),
                Err(e) => Err(e),
            };
            (*glance, result, progress.sent())
        }
    }))
    .await;
    if let Some(digests) = read.lock().unwrap_or_else(|e| e.into_inner()).take() {
        artifact.digests = Some(digests);
    }

    let mut notes = Vec::new();
    let mut failed = Vec::new();
    let mut held = Vec::new();
    for (glance, result, sent) in outcomes {
        artifact.bytes_sent += sent;
        let cloud = glance.cloud().to_string();
        let prefix = if several {
            format!("{cloud}: ")
        } else {
            String::new()
        };
        let outcome = match result {
            Ok((published, _)) if published.held_by.is_some() => {
                let by = published.held_by.as_deref().unwrap_or_default();
                let note = publish::held_note(&spec.family, by, spec.store_path, &cloud);
                held.push(format!("{prefix}{note}"));
                CloudOutcome::Held(note)
            }
            Ok((published, retention)) => {
                notes.push(format!("{prefix}{}", note_of(&published, sent, &retention)));
                CloudOutcome::Published(published)
            }
            Err(e) => {
                let outcome = CloudOutcome::Failed {
                    error: error_chain(&e),
                    cleanup_failed: e.cleanup_failed(),
                };
                failed.push((cloud.clone(), e));
                outcome
            }
        };
        artifact.clouds.push(CloudResult {
            cloud,
            outcome,
            bytes_sent: sent,
        });
    }
    artifact.sort_clouds(ctx.targets);
    artifact.published = artifact.primary_published();

    if !failed.is_empty() {
        if !several {
            if let Some((_, e)) = failed.pop() {
                return Err(e.into());
            }
        }
        let succeeded = artifact
            .clouds
            .iter()
            .filter(|c| matches!(c.outcome, CloudOutcome::Published(_)))
            .map(|c| c.cloud.clone())
            .collect();
        return Err(StageError::UploadClouds(Box::new(CloudsFailed {
            failed,
            succeeded,
        })));
    }
    if notes.is_empty() && !held.is_empty() {
        return Ok(Outcome::Held(held.join("; ")));
    }
    notes.extend(held);
    Ok(Outcome::Done(Some(notes.join("; "))))
}

/// What one cloud's publish did, in words.
fn note_of(published: &Published, sent: u64, retention: &str) -> String {
    if published.skipped {
        return format!(
            "{} already current with the same build; nothing sent",
            published.image_id
        );
    }
    format!(
        "{} is current ({sent} bytes sent, hashed on the way; NAR hash matches{}{}){retention}",
        published.image_id,
        published
            .replaced
            .as_ref()
            .map(|r| format!(", replaced {r}"))
            .unwrap_or_default(),
        if published.attempts > 1 {
            format!(", {} attempts", published.attempts)
        } else {
            String::new()
        }
    )
}

/// Send consumer `lane`'s share of `source` into candidate `id` by `method`, and return the
/// digests of what was sent once the read proved the store output's NAR hash.
#[allow(clippy::too_many_arguments)]
async fn send(
    glance: &Glance,
    method: UploadMethod,
    source: &Source,
    lane: usize,
    id: String,
    progress: Progress,
    active_timeout: Duration,
    read: &Mutex<Option<Digests>>,
) -> Result<Option<Digests>, Error> {
    let glance_err = |what: String| move |source: glance::Error| Error::Glance { what, source };
    let import = match method {
        UploadMethod::Direct => false,
        UploadMethod::Import => true,
        UploadMethod::Auto => glance
            .import_info()
            .await
            .map_err(glance_err(
                "ask which import methods the cloud offers".into(),
            ))?
            .offers("glance-direct"),
    };
    let read_err = |e: Arc<stream::Error>| Error::Data {
        what: "read the image while sending it".into(),
        source: Box::new(e),
    };
    let body = source.open(lane).map_err(|e| read_err(Arc::new(e)))?;
    let (chunks, finished) = body.split(progress);
    let sent = if import {
        glance
            .stage_image(&id, chunks)
            .await
            .map_err(glance_err(format!("stage the data of {id}")))
    } else {
        glance
            .upload_file(&id, chunks)
            .await
            .map_err(glance_err(format!("upload the data of {id}")))
    };
    // A failed read (a store output that is not what Nix built) explains a failed upload
    // better than the broken connection it caused, and is never worth a retry.
    let outcome = finished.outcome().await;
    let digests = match (sent, outcome) {
        (Ok(()), Ok(done)) => done.digests,
        (_, Err(e)) if !matches!(*e, stream::Error::NoConsumer) => return Err(read_err(e)),
        (Err(e), _) => return Err(e),
        (Ok(()), Err(e)) => return Err(read_err(e)),
    };
    *read.lock().unwrap_or_else(|e| e.into_inner()) = Some(digests.clone());
    if import {
        glance
            .import_glance_direct(&id)
            .await
            .map_err(glance_err(format!("import {id} with glance-direct")))?;
        // A failed import never turns `active`: watch for Glance's own verdict.
        let policy = glance::WaitPolicy {
            delay: Duration::from_millis(300),
            timeout: active_timeout,
        };
        glance::wait_for_import(glance, &id, &policy)
            .await
            .map_err(glance_err(format!("import {id}")))?;
    }
    Ok(Some(digests))
}
