//! `promote`: copies a profile's image from a source cloud (staging) into the pipeline's cloud
//! (production) and makes it current there, through the same candidate protocol as `upload`
//! ([`crate::lifecycle::publish`]).
//!
//! The bytes flow `GET /v2/images/{id}/file` on the source straight into `PUT …/file` of a
//! hidden candidate on the target: no temporary file, one pass, memory bounded by the HTTP
//! clients' buffers. The target's own size and hashes must equal the source's before the
//! candidate becomes visible; any failure deletes the candidate and leaves the target's current
//! image untouched.

use super::{Artifact, Context, Error as StageError, Kind, Outcome};
use crate::glance::{self, Glance, Hidden, Image, ImageFilter, ImageStatus, NewImage, Visibility};
use crate::lifecycle::publish::{self, Family, Fingerprint, Publish};
use crate::lifecycle::{in_family, keys, retention, DEFAULT_KEEP, LIFECYCLE_TAGS, TAG_CURRENT};
use crate::progress::Progress;
use futures::StreamExt;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::time::Duration;

/// Options of the `promote` stage: copy each profile's current image from cloud `from` into
/// the pipeline's cloud.
#[derive(Debug, Default, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "PromoteOptions")]
pub struct Options {
    /// clouds.yaml entry to copy from (staging).
    pub from: String,
    /// Stable name of the images; `{profile}` is replaced (default `hephaestus-{profile}`).
    #[serde(default)]
    pub name: Option<String>,
    /// Promote this generation instead of the source's current image.
    #[serde(default)]
    pub generation: Option<String>,
    /// Refuse images without this tag (the tag CI sets once an image passed its tests).
    #[serde(default)]
    pub require_tag: Option<String>,
    /// Glance visibility in the target (default `private`).
    #[serde(default)]
    pub visibility: Option<Visibility>,
    /// Project ids the images are shared with (needs `visibility: shared`); each project
    /// accepts the image on its side, as Glance's image-sharing flow asks.
    #[serde(default)]
    pub members: Option<Vec<String>>,
    /// Seconds to wait for the copy to become `active` (default 600).
    #[serde(default)]
    pub timeout: Option<u64>,
    /// Seconds to keep trying to delete a failed candidate (default 120).
    #[serde(default)]
    pub cleanup_timeout: Option<u64>,
    /// Generations of the profile kept in the target after a promotion, the current one
    /// included (default 3), as the upload's `keep`.
    #[serde(default)]
    pub keep: Option<u32>,
}

/// Properties Glance manages itself: copying them would be refused or meaningless.
const GLANCE_OWNED: &[&str] = &[
    "self",
    "file",
    "schema",
    "stores",
    "direct_url",
    "locations",
    "protected",
    "min_disk",
    "min_ram",
    "virtual_size",
    "os_hash_algo",
    "os_hash_value",
    "checksum",
    "size",
];

/// Why a promotion did not happen.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A Glance call on the source failed.
    #[error("cannot {what} in the source cloud {cloud}")]
    Source {
        /// What was being done.
        what: String,
        /// Source cloud.
        cloud: String,
        /// The cause.
        #[source]
        source: glance::Error,
    },
    /// The source has nothing to promote for this profile.
    #[error("the source cloud {cloud} has no {what} image of `{profile}` named `{name}`")]
    NothingToPromote {
        /// Source cloud.
        cloud: String,
        /// Profile.
        profile: String,
        /// Stable name looked up.
        name: String,
        /// `current` or `generation G`.
        what: String,
    },
    /// Several images of the family carry the asked generation.
    #[error(
        "the source cloud {cloud} has {} images of `{name}` with generation {generation} ({}): \
         refusing to guess; remove the duplicates, or promote by the current image",
        ids.len(),
        ids.join(", ")
    )]
    Ambiguous {
        /// Source cloud.
        cloud: String,
        /// Stable name.
        name: String,
        /// The generation asked for.
        generation: String,
        /// The matching images.
        ids: Vec<String>,
    },
    /// The source image is not fit to promote.
    #[error("refusing to promote {id} from {cloud}: {reason}")]
    Refused {
        /// Source cloud.
        cloud: String,
        /// Source image id.
        id: String,
        /// Why.
        reason: String,
    },
    /// Publishing into the target failed (candidate handling as in `upload`).
    #[error("publishing into the target cloud failed")]
    Target(#[from] publish::Error),
}

impl Error {
    /// True when a candidate may remain in the target cloud (exit code 3).
    pub fn cleanup_failed(&self) -> bool {
        matches!(self, Error::Target(e) if e.cleanup_failed())
    }
}

/// Promote the artifact's profile from the stage's source cloud into the context's cloud.
pub async fn run(
    options: &Options,
    artifact: &mut Artifact,
    ctx: &Context<'_>,
) -> Result<Outcome, StageError> {
    let target = ctx.glance().ok_or(StageError::NoCloud(Kind::Promote))?;
    let source = ctx.source.ok_or(StageError::NoCloud(Kind::Promote))?;
    let profile = artifact.profile.name.clone();
    let name = ctx.image_name(&profile);
    let progress = Progress::default();
    let image = source_image(source, &profile, &name, options.generation.as_deref()).await?;
    let ticker = ctx
        .reporter
        .track(&profile, image.size.unwrap_or(0), progress.clone());
    let result = promote(source, target, &profile, &name, &image, options, &progress).await;
    ticker.finish();
    artifact.bytes_sent += progress.sent();
    let promoted = result?;
    if let Some(held) = &promoted.held_by {
        let family = Family {
            profile: &profile,
            name: &name,
        };
        let store_path = image.property(keys::STORE_PATH).unwrap_or_default();
        let note = publish::held_note(&family, held, store_path, target.cloud());
        artifact.published = Some(promoted);
        return Ok(Outcome::Held(note));
    }
    let retention = if promoted.skipped {
        String::new()
    } else {
        let keep = options.keep.unwrap_or(DEFAULT_KEEP);
        retention::after_publish(target, &profile, &name, keep).await
    };
    let note = if promoted.skipped {
        format!(
            "{} in {} already is the same build; nothing copied",
            promoted.image_id,
            target.cloud()
        )
    } else {
        format!(
            "{} from {} is current in {} ({} bytes copied{}){retention}",
            name,
            source.cloud(),
            target.cloud(),
            progress.sent(),
            promoted
                .replaced
                .as_ref()
                .map(|r| format!(", replaced {r}"))
                .unwrap_or_default()
        )
    };
    artifact.published = Some(promoted);
    Ok(Outcome::Done(Some(note)))
}

/// The image to promote: the source's current one, or generation `generation` of the family.
async fn source_image(
    source: &Glance,
    profile: &str,
    name: &str,
    generation: Option<&str>,
) -> Result<Image, Error> {
    let fail = |what: &str| {
        let what = what.to_string();
        let cloud = source.cloud().to_string();
        move |e| Error::Source {
            what,
            cloud,
            source: e,
        }
    };
    let mut filter = ImageFilter {
        properties: BTreeMap::from([(keys::PROFILE.to_string(), profile.to_string())]),
        ..ImageFilter::default()
    };
    let found = match generation {
        None => {
            filter.name = Some(name.to_string());
            filter.tags = vec![TAG_CURRENT.to_string()];
            source
                .list_images(&filter)
                .await
                .map_err(fail("look up the current image"))?
                .into_iter()
                .max_by(|a, b| a.created_at.cmp(&b.created_at))
        }
        Some(g) => {
            filter
                .properties
                .insert(keys::GENERATION.to_string(), g.to_string());
            filter.hidden = Hidden::Include;
            // Candidates are not members of the family: a half-made upload is never promoted.
            let mut found: Vec<Image> = source
                .list_images(&filter)
                .await
                .map_err(fail(&format!("look up generation {g}")))?
                .into_iter()
                .filter(|i| in_family(i, name))
                .collect();
            if found.len() > 1 {
                return Err(Error::Ambiguous {
                    cloud: source.cloud().to_string(),
                    name: name.to_string(),
                    generation: g.to_string(),
                    ids: found.iter().map(|i| i.id.clone()).collect(),
                });
            }
            found.pop()
        }
    };
    found.ok_or_else(|| Error::NothingToPromote {
        cloud: source.cloud().to_string(),
        profile: profile.to_string(),
        name: name.to_string(),
        what: generation.map_or_else(|| "current".to_string(), |g| format!("generation {g}")),
    })
}

fn refuse(source: &Glance, image: &Image, reason: impl Into<String>) -> Error {
    Error::Refused {
        cloud: source.cloud().to_string(),
        id: image.id.clone(),
        reason: reason.into(),
    }
}

/// Promote `image` (of `profile`, family `name`) from `source` into `target`.
pub async fn promote(
    source: &Glance,
    target: &Glance,
    profile: &str,
    name: &str,
    image: &Image,
    options: &Options,
    progress: &Progress,
) -> Result<publish::Published, Error> {
    if image.status != ImageStatus::Active {
        return Err(refuse(
            source,
            image,
            format!("it is {}, not active", image.status),
        ));
    }
    for key in [keys::PROFILE, keys::STORE_PATH, keys::GENERATION] {
        if image.property(key).is_none() {
            return Err(refuse(
                source,
                image,
                format!("it has no `{key}`: it was not published by this pipeline"),
            ));
        }
    }
    if let Some(tag) = &options.require_tag {
        if !image.tags.iter().any(|t| t == tag) {
            return Err(refuse(
                source,
                image,
                format!("it lacks the tag `{tag}` that says it passed its tests"),
            ));
        }
    }
    let Some(expected) = Fingerprint::of_image(image) else {
        return Err(refuse(
            source,
            image,
            "Glance reports no size or hash for it",
        ));
    };
    let generation = image.property(keys::GENERATION).unwrap_or_default();
    let store_path = image.property(keys::STORE_PATH).unwrap_or_default();

    let mut properties: BTreeMap<String, String> = image
        .properties
        .iter()
        .filter(|(k, _)| !GLANCE_OWNED.contains(&k.as_str()) && !k.starts_with("os_glance"))
        .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_string())))
        .collect();
    properties.insert(
        keys::PROMOTED_FROM.to_string(),
        format!("{}:{}", source.cloud(), image.id),
    );
    let tags: Vec<String> = image
        .tags
        .iter()
        .filter(|t| !LIFECYCLE_TAGS.contains(&t.as_str()))
        .cloned()
        .collect();
    let number = |key: &str| {
        image
            .properties
            .get(key)
            .and_then(serde_json::Value::as_u64)
    };
    // The sdk's hashes are recorded once the target's own hashes agree, as on an upload.
    let late_properties: BTreeMap<String, String> = properties
        .iter()
        .filter(|(k, _)| k.starts_with(keys::SDK_PREFIX))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    properties.retain(|k, _| !k.starts_with(keys::SDK_PREFIX));
    let spec = Publish {
        family: Family { profile, name },
        store_path,
        generation,
        image: NewImage {
            name: String::new(),
            disk_format: image.disk_format.clone().unwrap_or_else(|| "qcow2".into()),
            container_format: image
                .container_format
                .clone()
                .unwrap_or_else(|| "bare".into()),
            visibility: Some(options.visibility.unwrap_or(Visibility::Private)),
            os_hidden: true,
            tags: Vec::new(),
            min_disk: number("min_disk"),
            min_ram: number("min_ram"),
            properties,
        },
        tags,
        // The target's own sharing: the source's members are never copied.
        members: options.members.clone().unwrap_or_default(),
        expected: Some(expected),
        late_properties,
        // A copy is attempted once: the source's bytes are re-read only by a new run.
        attempts: 1,
        active_timeout: Duration::from_secs(
            options.timeout.unwrap_or(super::upload::DEFAULT_TIMEOUT),
        ),
        cleanup_timeout: Duration::from_secs(
            options
                .cleanup_timeout
                .unwrap_or(super::upload::DEFAULT_CLEANUP_TIMEOUT),
        ),
    };
    let from = image.id.as_str();
    Ok(publish::publish(target, &spec, |to| async move {
        let glance_err = |what: String| move |source| publish::Error::Glance { what, source };
        let data = source
            .download_file(from)
            .await
            .map_err(glance_err(format!(
                "download {from} from {}",
                source.cloud()
            )))?;
        let counter = progress.clone();
        let data = data.inspect(move |chunk| {
            if let Ok(c) = chunk {
                counter.add(c.len() as u64);
            }
        });
        target
            .upload_file(&to, data)
            .await
            .map_err(glance_err(format!("copy {from} into {to}")))?;
        Ok(None)
    })
    .await?)
}
