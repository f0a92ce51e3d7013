//! `upload`: publishes a verified image into Glance so that nothing becomes visible unless every
//! check passed (DESIGN §6).
//!
//! 1. Find the profile's current image (stable name + tag `current`); skip when it already has
//!    our store path and hashes.
//! 2. Delete candidates that earlier runs left behind (a crashed run cannot clean up itself).
//! 3. Create a hidden candidate (tag `candidate`) with every property; stream the file into it
//!    with bounded memory (`PUT /file`, or `PUT /stage` + `glance-direct`); wait for `active`.
//! 4. Compare Glance's `size`, `os_hash_value` and `checksum` with the verify stage's digests.
//! 5. Re-read the current image (someone else may have published meanwhile), then make the
//!    candidate current (stable name, visible, tag `current`) and demote the old one
//!    (`{name}-{generation}`, hidden, tag `previous`) — kept, never deleted.
//!
//! Any failure after 3 deletes the candidate, retrying while Glance is unreachable, and leaves
//! the current image untouched; a candidate that cannot be deleted is reported by id (exit 3).
//! Transient failures (5xx, 429, connection lost) are retried with backon — the maintained
//! successor of the unmaintained `backoff` crate (RUSTSEC-2025-0012) — each time on a fresh
//! candidate, because Glance cannot resume an upload and an image whose upload died stays
//! `saving` for ever.
//!
//! The file is not hashed again here: the verify stage's digests are what Glance's own hashes
//! of the received bytes are compared with, so a file changed since verify, or a byte changed
//! in transit, is caught by that comparison without spending the client's CPU twice.

use crate::glance::{
    self, Glance, Hidden, Image, ImageFilter, ImageStatus, NewImage, PatchOp, Visibility,
    WaitPolicy,
};
use crate::image::digest::Digests;
use crate::pipeline::spec::{UploadMethod, UploadOptions};
use backon::{ExponentialBuilder, Retryable};
use bytes::Bytes;
use futures::Stream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncReadExt;

/// Tag of an image being uploaded; never visible, never left behind.
pub const TAG_CANDIDATE: &str = "candidate";
/// Tag of the profile's current image.
pub const TAG_CURRENT: &str = "current";
/// Tag of the image the current one replaced.
pub const TAG_PREVIOUS: &str = "previous";

/// Bytes read from the file and handed to the HTTP client at a time.
const CHUNK: usize = 1 << 20;
/// Default seconds to wait for `active`.
const DEFAULT_TIMEOUT: u64 = 600;
/// Default attempts on transient failures.
const DEFAULT_ATTEMPTS: u32 = 3;
/// Default seconds to keep trying to delete a failed candidate.
const DEFAULT_CLEANUP_TIMEOUT: u64 = 120;
/// A candidate not updated for this long belongs to a run that died.
const STALE_AFTER: time::Duration = time::Duration::hours(2);

/// Why an image was not published.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A Glance call failed.
    #[error("cannot {what}")]
    Glance {
        /// What was being done.
        what: String,
        /// The cause.
        #[source]
        source: glance::Error,
    },
    /// Glance's view of the uploaded bytes differs from ours.
    #[error(
        "Glance's {field} of the uploaded image differs from ours: ours {ours}, Glance's {theirs}; \
         the bytes changed between verify and Glance's store (in transit, or the file changed)"
    )]
    Mismatch {
        /// `size`, `os_hash_value (sha512)` or `checksum (md5)`.
        field: String,
        /// Our value.
        ours: String,
        /// Glance's value.
        theirs: String,
    },
    /// Glance hashes with an algorithm the verify stage does not compute.
    #[error("Glance hashes images with {0}, which the pipeline does not compute (it has md5, sha256 and sha512)")]
    UnknownHashAlgorithm(String),
    /// Someone else changed the profile's current image while this run was uploading.
    #[error(
        "the current image of `{name}` changed during the run (was {before}, now {after}): another \
         publish ran at the same time; this candidate was not made current"
    )]
    ConcurrentChange {
        /// Stable name.
        name: String,
        /// Current image id when the run began (or `none`).
        before: String,
        /// Current image id now (or `none`).
        after: String,
    },
    /// The image file could not be opened.
    #[error("cannot read {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// An attempt failed and its candidate was deleted.
    #[error("publishing failed; candidate {candidate} was deleted")]
    CandidateDeleted {
        /// The deleted candidate.
        candidate: String,
        /// Why the attempt failed.
        #[source]
        source: Box<Error>,
    },
    /// An attempt failed and its candidate could not be deleted: the cloud holds a half-made,
    /// hidden image.
    #[error(
        "publishing failed AND the hidden candidate image {candidate} could not be deleted \
         (delete it with `openstack image delete {candidate}`; cause of the failure: {cause}); \
         deleting it failed"
    )]
    CleanupFailed {
        /// The candidate left behind.
        candidate: String,
        /// Why the attempt failed, as text.
        cause: String,
        /// Why the delete failed.
        #[source]
        source: glance::Error,
    },
}

impl Error {
    /// Worth another attempt on a fresh candidate: Glance or the network failed, not the data
    /// or the request.
    fn is_transient(&self) -> bool {
        match self {
            Error::Glance { source, .. } => source.is_transient(),
            Error::CandidateDeleted { source, .. } => source.is_transient(),
            _ => false,
        }
    }

    /// True when a candidate may remain in the cloud (exit code 3).
    pub fn cleanup_failed(&self) -> bool {
        matches!(self, Error::CleanupFailed { .. })
    }
}

fn glance_err(what: impl Into<String>) -> impl FnOnce(glance::Error) -> Error {
    let what = what.into();
    move |source| Error::Glance { what, source }
}

/// A profile's family of images in one cloud: its stable name and how failures are handled.
/// Publishing and promotion share everything that happens once a candidate exists.
#[derive(Debug, Clone, Copy)]
pub struct Family<'a> {
    /// Profile name (`hephaestus_profile`).
    pub profile: &'a str,
    /// Stable name of the current image.
    pub name: &'a str,
    /// Upload options (cleanup timeout, …).
    pub options: &'a UploadOptions,
}

/// What to publish: the facts of the earlier stages that the upload needs.
#[derive(Debug, Clone)]
pub struct Upload<'a> {
    /// Profile name.
    pub profile: &'a str,
    /// Stable name of the current image.
    pub name: &'a str,
    /// Generation of this build (`{UTC yyyymmddHHMM}-{hash prefix}`).
    pub generation: &'a str,
    /// Store path of the build.
    pub store_path: &'a str,
    /// The image file.
    pub file: &'a Path,
    /// Its size and digests, from the verify stage.
    pub digests: &'a Digests,
    /// Its virtual disk size (so `min_disk` can never be smaller than the disk).
    pub virtual_size: u64,
    /// Every property.
    pub properties: &'a std::collections::BTreeMap<String, String>,
    /// Every tag except the lifecycle tag.
    pub tags: &'a [String],
    /// Glance `min_disk` from the profile (GiB).
    pub min_disk: Option<u64>,
    /// Glance `min_ram` from the profile (MiB).
    pub min_ram: Option<u64>,
    /// Stage options.
    pub options: &'a UploadOptions,
}

/// What the upload did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Published {
    /// The image now current.
    pub image_id: String,
    /// Its name.
    pub image_name: String,
    /// True when the current image already was this build: nothing was sent.
    pub skipped: bool,
    /// Bytes of image data sent (over all attempts).
    pub bytes_sent: u64,
    /// The image it replaced, now hidden and tagged `previous`.
    pub replaced: Option<String>,
    /// Attempts made.
    pub attempts: u32,
}

/// Counts bytes sent, for progress and the report.
#[derive(Debug, Default, Clone)]
pub struct Progress {
    sent: Arc<AtomicU64>,
}

impl Upload<'_> {
    fn family(&self) -> Family<'_> {
        Family {
            profile: self.profile,
            name: self.name,
            options: self.options,
        }
    }
}

impl Progress {
    /// Bytes handed to the HTTP client so far.
    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    /// Count `n` more bytes sent.
    pub fn add(&self, n: u64) {
        self.sent.fetch_add(n, Ordering::Relaxed);
    }
}

/// The profile's current image under `name`, if any.
pub async fn find_current(
    glance: &Glance,
    profile: &str,
    name: &str,
) -> Result<Option<Image>, Error> {
    let filter = ImageFilter {
        name: Some(name.to_string()),
        tags: vec![TAG_CURRENT.to_string()],
        properties: [("hephaestus_profile".to_string(), profile.to_string())].into(),
        hidden: Hidden::Exclude,
        ..ImageFilter::default()
    };
    let images = (|| glance.list_images(&filter))
        .retry(transient_backoff())
        .when(glance::Error::is_transient)
        .await
        .map_err(glance_err(format!("look up the current image `{name}`")))?;
    // Several would mean an interrupted demotion; the newest is the one people boot.
    Ok(images
        .into_iter()
        .max_by(|a, b| a.created_at.cmp(&b.created_at)))
}

fn transient_backoff() -> ExponentialBuilder {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(500))
        .with_max_delay(Duration::from_secs(5))
        .with_max_times(3)
}

/// Whether `image` already is this build, byte for byte.
fn is_same_build(image: &Image, up: &Upload<'_>) -> bool {
    image.status == ImageStatus::Active
        && image.property("hephaestus_store_path") == Some(up.store_path)
        && image.size == Some(up.digests.size)
        && compare_hashes(image, up.digests).is_ok()
}

/// Glance's size and hashes against ours.
fn compare_hashes(image: &Image, ours: &Digests) -> Result<(), Error> {
    let mismatch = |field: &str, ours: String, theirs: String| Error::Mismatch {
        field: field.to_string(),
        ours,
        theirs,
    };
    let size = image.size.unwrap_or(0);
    if size != ours.size {
        return Err(mismatch("size", ours.size.to_string(), size.to_string()));
    }
    let algo = image.os_hash_algo.as_deref().unwrap_or("sha512");
    let expected = match algo {
        "sha512" => &ours.sha512,
        "sha256" => &ours.sha256,
        "md5" => &ours.md5,
        other => return Err(Error::UnknownHashAlgorithm(other.to_string())),
    };
    let theirs = image.os_hash_value.clone().unwrap_or_default();
    if &theirs != expected {
        return Err(mismatch(
            &format!("os_hash_value ({algo})"),
            expected.clone(),
            theirs,
        ));
    }
    if let Some(md5) = &image.checksum {
        if md5 != &ours.md5 {
            return Err(mismatch("checksum (md5)", ours.md5.clone(), md5.clone()));
        }
    }
    Ok(())
}

/// Candidates of this name that earlier runs left behind: hidden, tagged `candidate`, of this
/// profile. Deleting them is what makes a crashed run's leftovers disappear.
async fn sweep_stale_candidates(glance: &Glance, up: &Upload<'_>) -> Result<(), Error> {
    let filter = ImageFilter {
        tags: vec![TAG_CANDIDATE.to_string()],
        properties: [("hephaestus_profile".to_string(), up.profile.to_string())].into(),
        hidden: Hidden::Only,
        ..ImageFilter::default()
    };
    let stale = glance
        .list_images(&filter)
        .await
        .map_err(glance_err("look for candidates left by earlier runs"))?;
    // A candidate another run is uploading right now must survive: only those untouched for
    // longer than any upload may take are leftovers. Candidates are named after their
    // generation, so one of family `x-lucy` is never mistaken for one of `x-lucy-test`.
    let cutoff = time::OffsetDateTime::now_utc() - STALE_AFTER;
    let is_stale = |i: &&Image| {
        i.display_name() == crate::lifecycle::kept_name(up.name, i)
            && i.updated_at
                .as_deref()
                .and_then(|t| {
                    time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339)
                        .ok()
                })
                .is_some_and(|t| t < cutoff)
    };
    for image in stale.iter().filter(is_stale) {
        tracing::warn!(
            "{}: deleting candidate {} ({}, {}) left by an earlier run",
            up.profile,
            image.id,
            image.display_name(),
            image.status
        );
        glance
            .delete_image(&image.id)
            .await
            .map_err(glance_err(format!(
                "delete the stale candidate {}",
                image.id
            )))?;
    }
    Ok(())
}

/// Publish `up`. `progress` counts the bytes sent.
pub async fn publish(
    glance: &Glance,
    up: &Upload<'_>,
    progress: &Progress,
) -> Result<Published, Error> {
    let current = find_current(glance, up.profile, up.name).await?;
    if let Some(cur) = current.as_ref().filter(|c| is_same_build(c, up)) {
        return Ok(Published {
            image_id: cur.id.clone(),
            image_name: up.name.to_string(),
            skipped: true,
            bytes_sent: 0,
            replaced: None,
            attempts: 0,
        });
    }
    sweep_stale_candidates(glance, up).await?;

    let attempts = up.options.attempts.unwrap_or(DEFAULT_ATTEMPTS).max(1);
    let mut made = 0u32;
    let backoff = ExponentialBuilder::default()
        .with_min_delay(Duration::from_secs(1))
        .with_max_delay(Duration::from_secs(10))
        .with_max_times(attempts.saturating_sub(1) as usize);
    let candidate = (|| {
        made += 1;
        attempt(glance, up, progress)
    })
    .retry(backoff)
    .when(Error::is_transient)
    .notify(|err, wait| {
        tracing::warn!(
            "{}: {}; trying again on a fresh candidate in {:.1}s",
            up.profile,
            crate::pipeline::runner::error_chain(err),
            wait.as_secs_f64()
        );
    })
    .await?;

    let replaced =
        make_current(glance, &up.family(), up.tags, &candidate, current.as_ref()).await?;
    Ok(Published {
        image_id: candidate,
        image_name: up.name.to_string(),
        skipped: false,
        bytes_sent: progress.sent(),
        replaced,
        attempts: made,
    })
}

/// One attempt: a fresh candidate, the bytes, the wait, the comparison. On failure the
/// candidate is deleted before returning.
async fn attempt(glance: &Glance, up: &Upload<'_>, progress: &Progress) -> Result<String, Error> {
    let gib = 1u64 << 30;
    let disk_gib = up.virtual_size.div_ceil(gib);
    let new = NewImage {
        name: format!("{}-{}", up.name, up.generation),
        disk_format: "qcow2".into(),
        container_format: "bare".into(),
        visibility: Some(up.options.visibility.unwrap_or(Visibility::Private)),
        os_hidden: true,
        tags: up
            .tags
            .iter()
            .cloned()
            .chain([TAG_CANDIDATE.to_string()])
            .collect(),
        min_disk: Some(up.min_disk.unwrap_or(0).max(disk_gib)),
        min_ram: up.min_ram,
        properties: up.properties.clone(),
    };
    let created = glance.create_image(&new).await.map_err(glance_err(format!(
        "create the candidate image `{}`",
        new.name
    )))?;
    let id = created.id;
    tracing::debug!("{}: candidate {id} created", up.profile);
    match send_and_check(glance, up, &id, progress).await {
        Ok(()) => Ok(id),
        Err(err) => Err(delete_candidate(glance, &up.family(), &id, err).await),
    }
}

async fn send_and_check(
    glance: &Glance,
    up: &Upload<'_>,
    id: &str,
    progress: &Progress,
) -> Result<(), Error> {
    let method = match up.options.method.unwrap_or_default() {
        UploadMethod::Direct => UploadMethod::Direct,
        UploadMethod::Import => UploadMethod::Import,
        UploadMethod::Auto => {
            let info = glance
                .import_info()
                .await
                .map_err(glance_err("ask which import methods the cloud offers"))?;
            if info.offers("glance-direct") {
                UploadMethod::Import
            } else {
                UploadMethod::Direct
            }
        }
    };
    let body = file_stream(up.file, progress.clone()).await?;
    match method {
        UploadMethod::Import => {
            glance
                .stage_image(id, body)
                .await
                .map_err(glance_err(format!("stage the data of {id}")))?;
            glance
                .import_glance_direct(id)
                .await
                .map_err(glance_err(format!("import {id} with glance-direct")))?;
        }
        _ => glance
            .upload_file(id, body)
            .await
            .map_err(glance_err(format!("upload the data of {id}")))?,
    }
    let policy = WaitPolicy {
        delay: Duration::from_millis(300),
        timeout: Duration::from_secs(up.options.timeout.unwrap_or(DEFAULT_TIMEOUT)),
    };
    let image = glance::wait_for_status(glance, id, ImageStatus::Active, &policy)
        .await
        .map_err(glance_err(format!("wait for {id} to become active")))?;
    compare_hashes(&image, up.digests)
}

/// The file as a stream of chunks: at most a couple of chunks are in memory at any time,
/// because the HTTP client pulls the next one only after writing the last.
async fn file_stream(
    path: &Path,
    progress: Progress,
) -> Result<impl Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static, Error> {
    let file = tokio::fs::File::open(path)
        .await
        .map_err(|source| Error::Read {
            path: path.to_path_buf(),
            source,
        })?;
    Ok(futures::stream::try_unfold(file, move |mut file| {
        let progress = progress.clone();
        async move {
            let mut buf = vec![0u8; CHUNK];
            let mut filled = 0;
            while filled < CHUNK {
                let n = file.read(&mut buf[filled..]).await?;
                if n == 0 {
                    break;
                }
                filled += n;
            }
            if filled == 0 {
                return Ok(None);
            }
            buf.truncate(filled);
            progress.add(filled as u64);
            Ok(Some((Bytes::from(buf), file)))
        }
    }))
}

/// Delete a failed candidate, retrying while Glance is unreachable; returns the error to report.
pub async fn delete_candidate(glance: &Glance, up: &Family<'_>, id: &str, cause: Error) -> Error {
    let budget = Duration::from_secs(
        up.options
            .cleanup_timeout
            .unwrap_or(DEFAULT_CLEANUP_TIMEOUT),
    );
    let backoff = ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(500))
        .with_max_delay(Duration::from_secs(10))
        .with_total_delay(Some(budget))
        .without_max_times();
    let deleted = (|| glance.delete_image(id))
        .retry(backoff)
        .when(|e| e.is_transient() || e.kind() == glance::ErrorKind::Conflict)
        .notify(|e, wait| {
            tracing::warn!(
                "{}: cannot delete candidate {id} yet ({}); retrying in {:.1}s",
                up.profile,
                crate::pipeline::runner::error_chain(e),
                wait.as_secs_f64()
            )
        })
        .await;
    match deleted {
        Ok(()) => Error::CandidateDeleted {
            candidate: id.to_string(),
            source: Box::new(cause),
        },
        Err(e) if e.kind() == glance::ErrorKind::NotFound => Error::CandidateDeleted {
            candidate: id.to_string(),
            source: Box::new(cause),
        },
        Err(source) => Error::CleanupFailed {
            candidate: id.to_string(),
            cause: crate::pipeline::runner::error_chain(&cause),
            source,
        },
    }
}

/// Make `candidate` current (with `tags` plus `current`) and demote `before` (the current
/// image when the run began).
pub async fn make_current(
    glance: &Glance,
    up: &Family<'_>,
    tags: &[String],
    candidate: &str,
    before: Option<&Image>,
) -> Result<Option<String>, Error> {
    // Someone may have published this profile since the run began: do not overwrite their
    // work with a build that did not know about it.
    let now = find_current(glance, up.profile, up.name).await?;
    let id_of = |i: Option<&Image>| i.map_or_else(|| "none".to_string(), |i| i.id.clone());
    if id_of(now.as_ref()) != id_of(before) {
        let err = Error::ConcurrentChange {
            name: up.name.to_string(),
            before: id_of(before),
            after: id_of(now.as_ref()),
        };
        return Err(delete_candidate(glance, up, candidate, err).await);
    }
    let tags: Vec<String> = tags
        .iter()
        .cloned()
        .chain([TAG_CURRENT.to_string()])
        .collect();
    let promote = [
        PatchOp::replace("name", up.name),
        PatchOp::replace("os_hidden", false),
        PatchOp::tags(tags),
    ];
    if let Err(e) = glance.update_image(candidate, &promote).await {
        let err = glance_err(format!("make {candidate} current"))(e);
        return Err(delete_candidate(glance, up, candidate, err).await);
    }
    let Some(old) = before else {
        return Ok(None);
    };
    let generation = old
        .property("hephaestus_generation")
        .map(str::to_string)
        .unwrap_or_else(|| old.id.chars().take(8).collect());
    let old_tags: Vec<String> = old
        .tags
        .iter()
        .filter(|t| *t != TAG_CURRENT && *t != TAG_PREVIOUS)
        .cloned()
        .chain([TAG_PREVIOUS.to_string()])
        .collect();
    let demote = [
        PatchOp::replace("name", format!("{}-{generation}", up.name)),
        PatchOp::replace("os_hidden", true),
        PatchOp::tags(old_tags),
    ];
    // The new image is already current and verified; failing to demote the old one leaves two
    // visible images of the same name, which a retry of the same patch repairs.
    (|| glance.update_image(&old.id, &demote))
        .retry(transient_backoff())
        .when(glance::Error::is_transient)
        .await
        .map_err(glance_err(format!(
            "demote the previous image {} (the new image {candidate} is current; hide {} by hand)",
            old.id, old.id
        )))?;
    retire_older_previous(glance, up, &old.id).await;
    Ok(Some(old.id.clone()))
}

/// Only the image just demoted keeps the `previous` tag; older generations stay, untagged.
/// Best effort: a failure here leaves a harmless extra `previous` tag, logged.
async fn retire_older_previous(glance: &Glance, up: &Family<'_>, keep: &str) {
    match crate::lifecycle::profile_images(glance, up.profile).await {
        Ok(images) => {
            crate::lifecycle::retire_other_previous(glance, up.name, &images, &[Some(keep)]).await
        }
        Err(e) => tracing::warn!(
            "{}: could not list older generations to untag: {}",
            up.profile,
            crate::pipeline::runner::error_chain(&e)
        ),
    }
}
