//! `upload`: publishes the verified image file into Glance through the image family's
//! candidate protocol ([`crate::lifecycle::publish`]), then applies retention.
//!
//! The file is not hashed again here: the verify stage's digests are what Glance's own hashes
//! of the received bytes are compared with, so a file changed since verify, or a byte changed
//! in transit, is caught by that comparison without spending the client's CPU twice.

use super::{slot, tag, Artifact, Context, Error as StageError, Kind, Outcome, Slot};
use crate::glance::{self, Glance, NewImage, Visibility};
use crate::image::stream::file_chunks;
use crate::lifecycle::publish::{self, Family, Fingerprint, Publish};
use crate::lifecycle::{retention, DEFAULT_KEEP};
use crate::progress::Progress;
use serde::Deserialize;
use std::path::Path;
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

/// Publish the artifact's verified image into the context's cloud.
pub async fn run(
    options: &Options,
    artifact: &mut Artifact,
    ctx: &Context<'_>,
) -> Result<Outcome, StageError> {
    let glance = ctx.glance.ok_or(StageError::NoCloud(Kind::Upload))?;
    let ev = slot(&artifact.evaluated, Kind::Upload, Slot::Evaluated)?;
    let built = slot(&artifact.build, Kind::Upload, Slot::Build)?;
    let verified = slot(&artifact.verified, Kind::Upload, Slot::Verified)?;
    let tagging = slot(&artifact.properties, Kind::Upload, Slot::Properties)?;
    // Proven, or skipped on purpose: either way the pipeline decided before anything is sent.
    slot(&artifact.booted, Kind::Upload, Slot::Booted)?;
    let name = ctx.image_name(&ev.profile);

    let mut properties = tagging.properties.clone();
    for (k, v) in tag::digest_properties(&verified.digests) {
        properties.insert(k.to_string(), v);
    }
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
        expected: Fingerprint::of_digests(&verified.digests),
        attempts: options.attempts.unwrap_or(DEFAULT_ATTEMPTS),
        active_timeout: Duration::from_secs(options.timeout.unwrap_or(DEFAULT_TIMEOUT)),
        cleanup_timeout: Duration::from_secs(
            options.cleanup_timeout.unwrap_or(DEFAULT_CLEANUP_TIMEOUT),
        ),
    };

    let progress = Progress::default();
    let ticker = ctx
        .reporter
        .track(&ev.profile, verified.digests.size, progress.clone());
    let method = options.method.unwrap_or_default();
    let file = verified.file.as_path();
    let active_timeout = spec.active_timeout;
    let result = publish::publish(glance, &spec, |id| {
        send_file(glance, method, file, id, progress.clone(), active_timeout)
    })
    .await;
    ticker.finish();
    artifact.bytes_sent += progress.sent();
    let published = result?;
    if let Some(held) = &published.held_by {
        let note = publish::held_note(&spec.family, held, spec.store_path, glance.cloud());
        artifact.published = Some(published);
        return Ok(Outcome::Held(note));
    }

    // Retention never fails a publish that succeeded: what it could not do is logged.
    let retention = if published.skipped {
        String::new()
    } else {
        let keep = options.keep.unwrap_or(DEFAULT_KEEP);
        retention::after_publish(glance, &ev.profile, &name, keep).await
    };
    let note = if published.skipped {
        format!(
            "{} already current with the same build; nothing sent",
            published.image_id
        )
    } else {
        format!(
            "{} is current ({} bytes sent{}{}){retention}",
            published.image_id,
            progress.sent(),
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
    };
    artifact.published = Some(published);
    Ok(Outcome::Done(Some(note)))
}

/// Send `file` into candidate `id` by `method`.
async fn send_file(
    glance: &Glance,
    method: UploadMethod,
    file: &Path,
    id: String,
    progress: Progress,
    active_timeout: Duration,
) -> Result<(), Error> {
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
    let body = file_chunks(file, progress)
        .await
        .map_err(|source| Error::Data {
            what: format!("read {}", file.display()),
            source: Box::new(source),
        })?;
    if import {
        glance
            .stage_image(&id, body)
            .await
            .map_err(glance_err(format!("stage the data of {id}")))?;
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
    } else {
        glance
            .upload_file(&id, body)
            .await
            .map_err(glance_err(format!("upload the data of {id}")))?;
    }
    Ok(())
}
