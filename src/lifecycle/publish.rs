//! The candidate protocol: how bytes become a profile's current image without anything
//! becoming visible unless every check passed (DESIGN §6). Upload and promote both publish
//! through [`publish`]; they differ only in where the bytes come from.
//!
//! 1. Find the family's current image; if it already is this build (store path, size and
//!    hashes), nothing is sent.
//! 2. Delete candidates that earlier runs left behind (a crashed run cannot clean up itself).
//! 3. Create a hidden candidate (tag `candidate`, named `{name}-{generation}`), send the bytes,
//!    wait for `active`, and compare Glance's size and hashes with the expected ones: known
//!    in advance (a promotion), or computed on the bytes as they were sent (an upload, which
//!    also proves the store output's NAR hash in that read). Only then are the
//!    `owner_specified.openstack.*` hashes recorded on the candidate.
//! 4. Re-read the current image (someone else may have published meanwhile), then make the
//!    candidate current and demote the old one (`{name}-{generation}`, hidden, `previous`).
//!
//! Any failure after 3 deletes the candidate, retrying while Glance is unreachable, and leaves
//! the current image untouched; a candidate that cannot be deleted is reported by id.
//! Transient failures (5xx, 429, connection lost) are retried with backon, the maintained
//! successor of the unmaintained `backoff` crate (RUSTSEC-2025-0012), each time on a fresh
//! candidate: Glance cannot resume an upload, and an image whose upload died stays `saving`
//! for ever.

use super::{kept_name, keys, transient_backoff, TAG_CANDIDATE, TAG_CURRENT, TAG_PREVIOUS};
use crate::error::error_chain;
use crate::glance::{
    self, Glance, Hidden, Image, ImageFilter, ImageStatus, NewImage, PatchOp, WaitPolicy,
};
use crate::image::digest::Digests;
use backon::{ExponentialBuilder, Retryable};
use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

/// A candidate not updated for this long belongs to a run that died.
pub const STALE_AFTER: time::Duration = time::Duration::hours(2);

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
    /// The bytes to send could not be read.
    #[error("cannot {what}")]
    Data {
        /// What was being done.
        what: String,
        /// The cause.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// Glance's view of the uploaded bytes differs from the expected one.
    #[error(
        "Glance's {field} of the uploaded image differs from ours: ours {ours}, Glance's {theirs}; \
         the bytes changed on their way into Glance's store (in transit, or at the source)"
    )]
    Mismatch {
        /// `size`, `os_hash_value (sha512)` or `checksum (md5)`.
        field: String,
        /// The expected value.
        ours: String,
        /// Glance's value.
        theirs: String,
    },
    /// Glance hashes with an algorithm whose expected value is unknown.
    #[error(
        "Glance hashes images with {0}, for which no expected value is known (known: {1}), and \
         there is no md5 checksum on both sides to compare instead"
    )]
    UnknownHashAlgorithm(String, String),
    /// Someone else changed the family's current image while this run was publishing.
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
    /// The old current image was retired, the candidate could not be shown, and the old one
    /// could not be restored: no image of the family is visible.
    #[error(
        "publishing `{name}` stopped half-way: the previous current image {old} was hidden, the \
         new image {new} (complete and verified) could not be made current ({}), and {old} \
         could not be restored; no `{name}` is visible now. Fix: `pipeline check --cloud CLOUD \
         --repair` makes {old} current again (then run the pipeline again), or make {new} \
         current by hand (name `{name}`, visible, tag `current`)",
        error_chain(cause.as_ref())
    )]
    Stranded {
        /// Stable name.
        name: String,
        /// The new, complete image, hidden.
        new: String,
        /// The old current image, hidden.
        old: String,
        /// Why the new image could not be shown.
        cause: Box<Error>,
        /// Why the old one could not be restored.
        #[source]
        source: Box<glance::Error>,
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
         (delete it with `openstack image delete {candidate}`; the publish failed because: {}); \
         deleting it failed",
        error_chain(cause.as_ref())
    )]
    CleanupFailed {
        /// The candidate left behind.
        candidate: String,
        /// Why the attempt failed.
        cause: Box<Error>,
        /// Why the delete failed.
        #[source]
        source: glance::Error,
    },
}

impl Error {
    /// Worth another attempt on a fresh candidate: Glance or the network failed, not the data
    /// or the request.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Glance { source, .. } => source.is_transient(),
            Error::CandidateDeleted { source, .. } => source.is_transient(),
            _ => false,
        }
    }

    /// True when the cloud may be left half-changed: a candidate remains, or a family has no
    /// visible current image.
    pub fn cleanup_failed(&self) -> bool {
        matches!(self, Error::CleanupFailed { .. } | Error::Stranded { .. })
    }
}

fn glance_err(what: impl Into<String>) -> impl FnOnce(glance::Error) -> Error {
    let what = what.into();
    move |source| Error::Glance { what, source }
}

/// A profile's family of images in one cloud.
#[derive(Debug, Clone, Copy)]
pub struct Family<'a> {
    /// Profile name (`hephaestus_profile`).
    pub profile: &'a str,
    /// Stable name of the current image.
    pub name: &'a str,
}

/// What the published bytes must be: their size and the hashes known for them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fingerprint {
    /// Size in bytes.
    pub size: u64,
    /// Hex digest by algorithm name as Glance spells it (`md5`, `sha256`, `sha512`, …).
    pub hashes: BTreeMap<String, String>,
}

impl Fingerprint {
    /// Our own digests of an image file.
    pub fn of_digests(d: &Digests) -> Self {
        Fingerprint {
            size: d.size,
            hashes: BTreeMap::from([
                ("md5".to_string(), d.md5.clone()),
                ("sha256".to_string(), d.sha256.clone()),
                ("sha512".to_string(), d.sha512.clone()),
            ]),
        }
    }

    /// What Glance recorded of an active image: its size, `os_hash_value` and `checksum`;
    /// `None` when it has no size or hash.
    pub fn of_image(image: &Image) -> Option<Self> {
        let size = image.size?;
        let algo = image.os_hash_algo.clone()?;
        let value = image.os_hash_value.clone()?;
        let mut hashes = BTreeMap::from([(algo, value)]);
        if let Some(md5) = &image.checksum {
            hashes
                .entry("md5".to_string())
                .or_insert_with(|| md5.clone());
        }
        Some(Fingerprint { size, hashes })
    }

    /// Glance's size and hashes of `image` against these.
    pub fn check(&self, image: &Image) -> Result<(), Error> {
        let mismatch = |field: &str, ours: &str, theirs: &str| Error::Mismatch {
            field: field.to_string(),
            ours: ours.to_string(),
            theirs: theirs.to_string(),
        };
        let size = image.size.unwrap_or(0);
        if size != self.size {
            return Err(mismatch("size", &self.size.to_string(), &size.to_string()));
        }
        let algo = image.os_hash_algo.as_deref().unwrap_or("sha512");
        let md5s = (self.hashes.get("md5"), image.checksum.as_ref());
        match self.hashes.get(algo) {
            Some(expected) => {
                let theirs = image.os_hash_value.as_deref().unwrap_or_default();
                if theirs != expected {
                    return Err(mismatch(
                        &format!("os_hash_value ({algo})"),
                        expected,
                        theirs,
                    ));
                }
            }
            None if md5s.0.is_some() && md5s.1.is_some() => {}
            None => {
                return Err(Error::UnknownHashAlgorithm(
                    algo.to_string(),
                    self.hashes.keys().cloned().collect::<Vec<_>>().join(", "),
                ))
            }
        }
        if let (Some(ours), Some(theirs)) = md5s {
            if ours != theirs {
                return Err(mismatch("checksum (md5)", ours, theirs));
            }
        }
        Ok(())
    }
}

/// What a publish did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Published {
    /// The image now current.
    pub image_id: String,
    /// Its name.
    pub image_name: String,
    /// True when nothing was sent: the current image already was this build, or the build
    /// is held.
    pub skipped: bool,
    /// The rolled-back image whose build this is: a rollback holds it, so it was not
    /// published again.
    pub held_by: Option<String>,
    /// The image it replaced, now hidden and tagged `previous`.
    pub replaced: Option<String>,
    /// Attempts made.
    pub attempts: u32,
    /// When the image that stays current was built, when it is not this run's build (nothing
    /// was sent): its age is the one monitoring needs.
    #[serde(skip)]
    pub built_at: Option<time::OffsetDateTime>,
}

/// What to publish, apart from the bytes.
#[derive(Debug, Clone)]
pub struct Publish<'a> {
    /// The family it joins.
    pub family: Family<'a>,
    /// The store path of the build (`hephaestus_store_path`).
    pub store_path: &'a str,
    /// Its generation; the candidate is named `{name}-{generation}`.
    pub generation: &'a str,
    /// The candidate's record: properties, formats, visibility, `min_*`. Its name, hidden
    /// flag and lifecycle tag are set here.
    pub image: NewImage,
    /// The current image's tags, without lifecycle tags.
    pub tags: Vec<String>,
    /// Projects a `shared` image is shared with, before it becomes current (so a consumer
    /// never sees a current image it cannot use).
    pub members: Vec<String>,
    /// What the bytes must be, when known before they are sent (a promotion). An upload
    /// learns it while sending: its `send` returns the digests of what it sent.
    pub expected: Option<Fingerprint>,
    /// Properties recorded once Glance's hashes agree with ours, before the candidate
    /// becomes current (the `owner_specified.openstack.*` hashes; an upload adds those of
    /// the digests its `send` returns).
    pub late_properties: BTreeMap<String, String>,
    /// Attempts on transient failures (at least 1).
    pub attempts: u32,
    /// How long to wait for `active` after the bytes are sent.
    pub active_timeout: Duration,
    /// How long to keep trying to delete a failed candidate.
    pub cleanup_timeout: Duration,
}

/// The family's current image, if any.
pub async fn find_current(glance: &Glance, family: &Family<'_>) -> Result<Option<Image>, Error> {
    let filter = ImageFilter {
        name: Some(family.name.to_string()),
        tags: vec![TAG_CURRENT.to_string()],
        properties: [(keys::PROFILE.to_string(), family.profile.to_string())].into(),
        hidden: Hidden::Exclude,
        ..ImageFilter::default()
    };
    let images = (|| glance.list_images(&filter))
        .retry(transient_backoff())
        .when(glance::Error::is_transient)
        .await
        .map_err(glance_err(format!(
            "look up the current image `{}`",
            family.name
        )))?;
    // Several would mean an interrupted demotion; the newest is the one people boot.
    Ok(images
        .into_iter()
        .max_by(|a, b| a.created_at.cmp(&b.created_at)))
}

/// The family's rolled-back image of build `store_path`, if a rollback holds that build.
pub async fn find_held(
    glance: &Glance,
    family: &Family<'_>,
    store_path: &str,
) -> Result<Option<Image>, Error> {
    let images = super::profile_images(glance, family.profile)
        .await
        .map_err(|e| Error::Data {
            what: format!("look for rollbacks of `{}`", family.name),
            source: Box::new(e),
        })?;
    Ok(super::held_by(&images, family.name, store_path).cloned())
}

/// The note for a held build: why, and the command that lifts the hold.
pub fn held_note(family: &Family<'_>, held: &str, store_path: &str, cloud: &str) -> String {
    let default = super::stable_name(super::DEFAULT_NAME_TEMPLATE, family.profile);
    let name = if family.name == default {
        String::new()
    } else {
        format!(" --name {}", family.name)
    };
    format!(
        "held: {store_path} was rolled back (image {held}); it is not published again until the \
         flake builds something else, or `pipeline release {} --cloud {cloud}{name}` lifts the \
         hold",
        family.profile
    )
}

/// Whether `image` already is the build `store_path` with bytes `expected`.
pub fn is_same_build(image: &Image, store_path: &str, expected: &Fingerprint) -> bool {
    image.status == ImageStatus::Active
        && image.property(keys::STORE_PATH) == Some(store_path)
        && expected.check(image).is_ok()
}

/// Whether `image` already is the build at `store_path`, as far as can be known without its
/// bytes: active, built from that store path (immutable), and carrying the hashes a publish
/// records (Glance's own and the sdk's). Only this pipeline makes an image with those
/// properties current, after comparing every hash, so a rebuilt store path need not be read,
/// booted or sent again.
pub fn already_holds(image: &Image, store_path: &str) -> bool {
    let has = |key: &str| image.property(key).is_some_and(|v| !v.is_empty());
    image.status == ImageStatus::Active
        && image.property(keys::STORE_PATH) == Some(store_path)
        && image.size.is_some()
        && image
            .os_hash_value
            .as_deref()
            .is_some_and(|v| !v.is_empty())
        && has(keys::SDK_SHA256)
        && has(keys::SDK_MD5)
}

/// openstacksdk's conventional hash properties of bytes with digests `d`: recorded on a
/// candidate only after Glance's hashes agreed with them.
pub fn digest_properties(d: &Digests) -> [(&'static str, String); 2] {
    [
        (keys::SDK_SHA256, d.sha256.clone()),
        (keys::SDK_MD5, d.md5.clone()),
    ]
}

/// Candidates of the family that earlier runs left behind: hidden, tagged `candidate`, of this
/// profile and name, untouched for longer than any upload takes.
async fn sweep_stale_candidates(glance: &Glance, family: &Family<'_>) -> Result<(), Error> {
    let filter = ImageFilter {
        tags: vec![TAG_CANDIDATE.to_string()],
        properties: [(keys::PROFILE.to_string(), family.profile.to_string())].into(),
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
        i.display_name() == kept_name(family.name, i)
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
            family.profile,
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

/// Publish `spec`: `send(candidate_id)` sends the bytes into the candidate and returns their
/// digests when it computed them on the way.
pub async fn publish<F, Fut>(
    glance: &Glance,
    spec: &Publish<'_>,
    send: F,
) -> Result<Published, Error>
where
    F: Fn(String) -> Fut,
    Fut: Future<Output = Result<Option<Digests>, Error>>,
{
    let family = &spec.family;
    let current = find_current(glance, family).await?;
    let same = |c: &&Image| match &spec.expected {
        Some(expected) => is_same_build(c, spec.store_path, expected),
        None => already_holds(c, spec.store_path),
    };
    if let Some(cur) = current.as_ref().filter(same) {
        return Ok(Published {
            image_id: cur.id.clone(),
            image_name: family.name.to_string(),
            skipped: true,
            held_by: None,
            replaced: None,
            attempts: 0,
            built_at: super::built_at(cur),
        });
    }
    if let Some(held) = find_held(glance, family, spec.store_path).await? {
        return Ok(Published {
            built_at: current.as_ref().and_then(super::built_at),
            image_id: current.map(|c| c.id).unwrap_or_default(),
            image_name: family.name.to_string(),
            skipped: true,
            held_by: Some(held.id),
            replaced: None,
            attempts: 0,
        });
    }
    sweep_stale_candidates(glance, family).await?;

    let attempts = spec.attempts.max(1);
    let mut made = 0u32;
    let backoff = ExponentialBuilder::default()
        .with_min_delay(Duration::from_secs(1))
        .with_max_delay(Duration::from_secs(10))
        .with_max_times(attempts.saturating_sub(1) as usize);
    let candidate = (|| {
        made += 1;
        attempt(glance, spec, &send)
    })
    .retry(backoff)
    .when(Error::is_transient)
    .notify(|err, wait| {
        tracing::warn!(
            "{}: {}; trying again on a fresh candidate in {:.1}s",
            family.profile,
            error_chain(err),
            wait.as_secs_f64()
        );
    })
    .await?;

    let replaced = make_current(
        glance,
        family,
        &spec.tags,
        &candidate,
        current.as_ref(),
        spec.cleanup_timeout,
    )
    .await?;
    Ok(Published {
        image_id: candidate,
        image_name: family.name.to_string(),
        skipped: false,
        held_by: None,
        replaced,
        attempts: made,
        built_at: None,
    })
}

/// One attempt: a fresh candidate, the bytes, the wait, the comparison. On failure the
/// candidate is deleted before returning.
async fn attempt<F, Fut>(glance: &Glance, spec: &Publish<'_>, send: &F) -> Result<String, Error>
where
    F: Fn(String) -> Fut,
    Fut: Future<Output = Result<Option<Digests>, Error>>,
{
    let family = &spec.family;
    let mut new = spec.image.clone();
    new.name = format!("{}-{}", family.name, spec.generation);
    new.os_hidden = true;
    new.tags = spec
        .tags
        .iter()
        .cloned()
        .chain([TAG_CANDIDATE.to_string()])
        .collect();
    let created = glance.create_image(&new).await.map_err(glance_err(format!(
        "create the candidate image `{}`",
        new.name
    )))?;
    let id = created.id;
    tracing::debug!("{}: candidate {id} created", family.profile);
    let checked = async {
        let sent = send(id.clone()).await?;
        let policy = WaitPolicy {
            delay: Duration::from_millis(300),
            timeout: spec.active_timeout,
        };
        let image = glance::wait_for_status(glance, &id, ImageStatus::Active, &policy)
            .await
            .map_err(glance_err(format!("wait for {id} to become active")))?;
        if let Some(expected) = &spec.expected {
            expected.check(&image)?;
        }
        let mut late = spec.late_properties.clone();
        if let Some(digests) = &sent {
            Fingerprint::of_digests(digests).check(&image)?;
            for (key, value) in digest_properties(digests) {
                late.insert(key.to_string(), value);
            }
        }
        if spec.expected.is_none() && sent.is_none() {
            return Err(Error::Data {
                what: format!("check the bytes of {id}"),
                source: "neither expected digests nor digests of the sent bytes are known".into(),
            });
        }
        if !late.is_empty() {
            let ops: Vec<PatchOp> = late
                .iter()
                .map(|(k, v)| PatchOp::set(k, v.as_str()))
                .collect();
            glance
                .update_image(&id, &ops)
                .await
                .map_err(glance_err(format!("record the hashes of {id}")))?;
        }
        for member in &spec.members {
            glance
                .add_member(&id, member)
                .await
                .map_err(glance_err(format!("share {id} with project {member}")))?;
        }
        Ok(())
    }
    .await;
    match checked {
        Ok(()) => Ok(id),
        Err(err) => Err(delete_candidate(glance, family, &id, err, spec.cleanup_timeout).await),
    }
}

/// Delete a failed candidate, retrying while Glance is unreachable for up to `budget`;
/// returns the error to report.
pub async fn delete_candidate(
    glance: &Glance,
    family: &Family<'_>,
    id: &str,
    cause: Error,
    budget: Duration,
) -> Error {
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
                family.profile,
                error_chain(e),
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
            cause: Box::new(cause),
            source,
        },
    }
}

/// Make `candidate` current (with `tags` plus `current`) and retire `before` (the current
/// image when the run began).
///
/// The old image is retired first, then the candidate is shown: showing first would, if the
/// second call failed, leave two visible images tagged `current` under one name. When showing
/// the candidate fails, the old image is restored and the candidate deleted, so the family
/// again has exactly its old current image; only when the restore fails too does the publish
/// stop half-way, naming both images ([`Error::Stranded`]).
async fn make_current(
    glance: &Glance,
    family: &Family<'_>,
    tags: &[String],
    candidate: &str,
    before: Option<&Image>,
    cleanup_timeout: Duration,
) -> Result<Option<String>, Error> {
    // Someone may have published this profile since the run began: do not overwrite their
    // work with a build that did not know about it.
    let now = find_current(glance, family).await?;
    let id_of = |i: Option<&Image>| i.map_or_else(|| "none".to_string(), |i| i.id.clone());
    if id_of(now.as_ref()) != id_of(before) {
        let err = Error::ConcurrentChange {
            name: family.name.to_string(),
            before: id_of(before),
            after: id_of(now.as_ref()),
        };
        return Err(delete_candidate(glance, family, candidate, err, cleanup_timeout).await);
    }
    // Each patch sets whole fields, so repeating one after a lost answer is harmless.
    let patch = |id: &str, ops: Vec<PatchOp>| {
        let id = id.to_string();
        async move {
            (|| glance.update_image(&id, &ops))
                .retry(transient_backoff())
                .when(glance::Error::is_transient)
                .await
        }
    };
    if let Some(old) = before {
        let old_tags: Vec<String> = old
            .tags
            .iter()
            .filter(|t| *t != TAG_CURRENT && *t != TAG_PREVIOUS)
            .cloned()
            .chain([TAG_PREVIOUS.to_string()])
            .collect();
        let retire = vec![
            PatchOp::replace("name", kept_name(family.name, old)),
            PatchOp::replace("os_hidden", true),
            PatchOp::tags(old_tags),
        ];
        if let Err(e) = patch(&old.id, retire).await {
            // A patch is all or nothing: the old image is still current, untouched.
            let err = glance_err(format!("retire the current image {}", old.id))(e);
            return Err(delete_candidate(glance, family, candidate, err, cleanup_timeout).await);
        }
    }
    let tags: Vec<String> = tags
        .iter()
        .cloned()
        .chain([TAG_CURRENT.to_string()])
        .collect();
    let show = vec![
        PatchOp::replace("name", family.name),
        PatchOp::replace("os_hidden", false),
        PatchOp::tags(tags.clone()),
    ];
    if let Err(e) = patch(candidate, show).await {
        // The answer may have been lost after Glance applied the patch: ask before undoing.
        if let Ok(image) = glance.get_image(candidate).await {
            if is_shown_current(&image, family.name) {
                return finish(glance, family, before).await;
            }
        }
        let cause = glance_err(format!("make {candidate} current"))(e);
        if let Some(old) = before {
            let restore = vec![
                PatchOp::replace("name", family.name),
                PatchOp::replace("os_hidden", false),
                PatchOp::tags(old.tags.clone()),
            ];
            if let Err(source) = patch(&old.id, restore).await {
                return Err(Error::Stranded {
                    name: family.name.to_string(),
                    new: candidate.to_string(),
                    old: old.id.clone(),
                    cause: Box::new(cause),
                    source: Box::new(source),
                });
            }
        }
        return Err(delete_candidate(glance, family, candidate, cause, cleanup_timeout).await);
    }
    finish(glance, family, before).await
}

/// Whether `image` is the visible current image of family `name`.
fn is_shown_current(image: &Image, name: &str) -> bool {
    !image.os_hidden && image.display_name() == name && super::has_tag(image, TAG_CURRENT)
}

/// After the candidate became current: untag older `previous` generations.
async fn finish(
    glance: &Glance,
    family: &Family<'_>,
    before: Option<&Image>,
) -> Result<Option<String>, Error> {
    let Some(old) = before else {
        return Ok(None);
    };
    retire_older_previous(glance, family, &old.id).await;
    Ok(Some(old.id.clone()))
}

/// Only the image just demoted keeps the `previous` tag; older generations stay, untagged.
/// Best effort: a failure here leaves a harmless extra `previous` tag, logged.
async fn retire_older_previous(glance: &Glance, family: &Family<'_>, keep: &str) {
    match super::profile_images(glance, family.profile).await {
        Ok(images) => {
            super::rollback::retire_other_previous(glance, family.name, &images, &[Some(keep)])
                .await
        }
        Err(e) => tracing::warn!(
            "{}: could not list older generations to untag: {}",
            family.profile,
            error_chain(&e)
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn glance_image(size: u64, algo: &str, value: &str, md5: Option<&str>) -> Image {
        serde_json::from_value(json!({
            "id": "i", "status": "active", "size": size, "os_hash_algo": algo,
            "os_hash_value": value, "checksum": md5, "tags": [], "visibility": "private",
            "os_hidden": true,
        }))
        .unwrap()
    }

    fn ours() -> Fingerprint {
        Fingerprint::of_digests(&Digests {
            size: 3,
            md5: "m".into(),
            sha256: "s2".into(),
            sha512: "s5".into(),
        })
    }

    #[test]
    fn equal_bytes_pass_and_each_difference_names_its_field() {
        assert!(ours()
            .check(&glance_image(3, "sha512", "s5", Some("m")))
            .is_ok());
        let size = ours()
            .check(&glance_image(4, "sha512", "s5", Some("m")))
            .unwrap_err();
        assert!(size.to_string().contains("size"), "{size}");
        let hash = ours()
            .check(&glance_image(3, "sha512", "x", Some("m")))
            .unwrap_err();
        assert!(hash.to_string().contains("ours s5, Glance's x"), "{hash}");
        let md5 = ours()
            .check(&glance_image(3, "sha256", "s2", Some("y")))
            .unwrap_err();
        assert!(md5.to_string().contains("checksum (md5)"), "{md5}");
    }

    #[test]
    fn an_unknown_algorithm_falls_back_to_md5_or_is_refused() {
        let source = glance_image(3, "sha3_512", "z", None);
        let from_source = Fingerprint::of_image(&source).unwrap();
        let err = from_source
            .check(&glance_image(3, "sha512", "s5", Some("m")))
            .unwrap_err();
        assert!(matches!(err, Error::UnknownHashAlgorithm(..)), "{err}");
        let with_md5 = Fingerprint::of_image(&glance_image(3, "sha3_512", "z", Some("m"))).unwrap();
        assert!(with_md5
            .check(&glance_image(3, "sha512", "s5", Some("m")))
            .is_ok());
    }
}
