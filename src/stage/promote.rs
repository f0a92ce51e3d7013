//! `promote`: copies a profile's verified image from a source cloud (staging) into a target
//! cloud (production) and makes it current there, exactly as `upload` does.
//!
//! The bytes flow `GET /v2/images/{id}/file` on the source straight into `PUT …/file` of a
//! hidden candidate on the target: no temporary file, one pass, memory bounded by the HTTP
//! clients' buffers. The target's own size and hashes must equal the source's before the
//! candidate becomes visible; any failure deletes the candidate and leaves the target's current
//! image untouched.

use super::upload::{self, Error as UploadError, Family, Progress, TAG_CANDIDATE};
use crate::glance::{
    self, Glance, Hidden, Image, ImageFilter, ImageStatus, NewImage, Visibility, WaitPolicy,
};
use crate::pipeline::spec::{PromoteOptions, UploadOptions};
use futures::StreamExt;
use std::collections::BTreeMap;
use std::time::Duration;

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

/// Tags that describe where an image stands in its own cloud's lifecycle, not what it is.
const LIFECYCLE_TAGS: &[&str] = &["candidate", "current", "previous", "rolled-back"];

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
    Target(#[from] UploadError),
}

impl Error {
    /// True when a candidate may remain in the target cloud (exit code 3).
    pub fn cleanup_failed(&self) -> bool {
        matches!(self, Error::Target(e) if e.cleanup_failed())
    }
}

/// What a promotion did.
pub type Promoted = upload::Published;

/// The image to promote: the source's current one, or generation `generation`.
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
        properties: BTreeMap::from([("hephaestus_profile".to_string(), profile.to_string())]),
        ..ImageFilter::default()
    };
    let found = match generation {
        None => {
            filter.name = Some(name.to_string());
            filter.tags = vec![upload::TAG_CURRENT.to_string()];
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
                .insert("hephaestus_generation".to_string(), g.to_string());
            filter.hidden = Hidden::Include;
            let family = format!("{name}-");
            source
                .list_images(&filter)
                .await
                .map_err(fail(&format!("look up generation {g}")))?
                .into_iter()
                .find(|i| i.display_name() == name || i.display_name().starts_with(&family))
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

/// Promote `profile`'s image named `name` from `source` into `target`.
pub async fn promote(
    source: &Glance,
    target: &Glance,
    profile: &str,
    name: &str,
    options: &PromoteOptions,
    progress: &Progress,
) -> Result<Promoted, Error> {
    let image = source_image(source, profile, name, options.generation.as_deref()).await?;
    if image.status != ImageStatus::Active {
        return Err(refuse(
            source,
            &image,
            format!("it is {}, not active", image.status),
        ));
    }
    for key in [
        "hephaestus_profile",
        "hephaestus_store_path",
        "hephaestus_generation",
    ] {
        if image.property(key).is_none() {
            return Err(refuse(
                source,
                &image,
                format!("it has no `{key}`: it was not published by this pipeline"),
            ));
        }
    }
    if let Some(tag) = &options.require_tag {
        if !image.tags.iter().any(|t| t == tag) {
            return Err(refuse(
                source,
                &image,
                format!("it lacks the tag `{tag}` that says it passed its tests"),
            ));
        }
    }
    let (Some(size), Some(algo), Some(hash)) =
        (image.size, &image.os_hash_algo, &image.os_hash_value)
    else {
        return Err(refuse(
            source,
            &image,
            "Glance reports no size or hash for it",
        ));
    };
    let generation = image
        .property("hephaestus_generation")
        .unwrap_or_default()
        .to_string();
    let store_path = image
        .property("hephaestus_store_path")
        .unwrap_or_default()
        .to_string();

    let upload_options = UploadOptions {
        cleanup_timeout: options.cleanup_timeout,
        timeout: options.timeout,
        ..UploadOptions::default()
    };
    let family = Family {
        profile,
        name,
        options: &upload_options,
    };
    let current = upload::find_current(target, profile, name).await?;
    if let Some(cur) = &current {
        let same = cur.status == ImageStatus::Active
            && cur.property("hephaestus_store_path") == Some(store_path.as_str())
            && cur.os_hash_value.as_deref() == Some(hash.as_str());
        if same {
            return Ok(Promoted {
                image_id: cur.id.clone(),
                image_name: name.to_string(),
                skipped: true,
                bytes_sent: 0,
                replaced: None,
                attempts: 0,
            });
        }
    }

    let mut properties: BTreeMap<String, String> = image
        .properties
        .iter()
        .filter(|(k, _)| !GLANCE_OWNED.contains(&k.as_str()) && !k.starts_with("os_glance"))
        .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_string())))
        .collect();
    properties.insert(
        "hephaestus_promoted_from".to_string(),
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
    let new = NewImage {
        name: format!("{name}-{generation}"),
        disk_format: image.disk_format.clone().unwrap_or_else(|| "qcow2".into()),
        container_format: image
            .container_format
            .clone()
            .unwrap_or_else(|| "bare".into()),
        visibility: Some(options.visibility.unwrap_or(Visibility::Private)),
        os_hidden: true,
        tags: tags
            .iter()
            .cloned()
            .chain([TAG_CANDIDATE.to_string()])
            .collect(),
        min_disk: number("min_disk"),
        min_ram: number("min_ram"),
        properties,
    };
    let created = target
        .create_image(&new)
        .await
        .map_err(|e| UploadError::Glance {
            what: format!("create the candidate `{}`", new.name),
            source: e,
        })?;
    let id = created.id;
    let copied = copy_and_check(
        source,
        target,
        &image.id,
        &id,
        size,
        algo,
        hash,
        image.checksum.as_deref(),
        options,
        progress,
    )
    .await;
    if let Err(err) = copied {
        return Err(upload::delete_candidate(target, &family, &id, err)
            .await
            .into());
    }
    let replaced = upload::make_current(target, &family, &tags, &id, current.as_ref()).await?;
    Ok(Promoted {
        image_id: id,
        image_name: name.to_string(),
        skipped: false,
        bytes_sent: progress.sent(),
        replaced,
        attempts: 1,
    })
}

#[allow(clippy::too_many_arguments)]
async fn copy_and_check(
    source: &Glance,
    target: &Glance,
    from: &str,
    to: &str,
    size: u64,
    algo: &str,
    hash: &str,
    checksum: Option<&str>,
    options: &PromoteOptions,
    progress: &Progress,
) -> Result<(), UploadError> {
    let glance_err = |what: String| move |source| UploadError::Glance { what, source };
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
        .upload_file(to, data)
        .await
        .map_err(glance_err(format!("copy {from} into {to}")))?;
    let policy = WaitPolicy {
        delay: Duration::from_millis(300),
        timeout: Duration::from_secs(options.timeout.unwrap_or(600)),
    };
    let copied = glance::wait_for_status(target, to, ImageStatus::Active, &policy)
        .await
        .map_err(glance_err(format!("wait for {to} to become active")))?;
    let mismatch = |field: &str, ours: String, theirs: String| UploadError::Mismatch {
        field: field.to_string(),
        ours,
        theirs,
    };
    if copied.size != Some(size) {
        return Err(mismatch(
            "size (source vs target)",
            size.to_string(),
            copied.size.map_or_else(|| "none".into(), |s| s.to_string()),
        ));
    }
    if copied.os_hash_algo.as_deref() == Some(algo) {
        let theirs = copied.os_hash_value.clone().unwrap_or_default();
        if theirs != hash {
            return Err(mismatch(
                &format!("os_hash_value ({algo}, source vs target)"),
                hash.to_string(),
                theirs,
            ));
        }
    } else if checksum.is_none() || copied.checksum.is_none() {
        return Err(UploadError::UnknownHashAlgorithm(format!(
            "{} in the target but {algo} in the source, and no md5 checksum on both sides to compare instead",
            copied.os_hash_algo.as_deref().unwrap_or("nothing")
        )));
    }
    if let (Some(ours), Some(theirs)) = (checksum, &copied.checksum) {
        if ours != theirs {
            return Err(mismatch(
                "checksum (md5, source vs target)",
                ours.to_string(),
                theirs.clone(),
            ));
        }
    }
    Ok(())
}
