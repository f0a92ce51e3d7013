//! Lifecycle of published generations after the upload: rolling a profile back to an earlier
//! generation ([`rollback`]) and deleting the generations nobody needs any more ([`retention`]).
//!
//! Both follow the conventions the upload stage sets (DESIGN §6): a profile's current image
//! carries the stable name, is visible and tagged `current`; each kept generation is hidden
//! and named `{name}-{generation}`; the one the current image replaced is tagged `previous`.
//! A *family* is the stable name with all its kept generations. A generation is found by its
//! `hephaestus_profile` and `hephaestus_generation` properties, never by parsing names, so a
//! name of one family that happens to start with another family's name is never mixed up.
//!
//! Candidates (tag `candidate`) belong to a publish in progress or to a crashed one, which
//! the upload stage sweeps; neither module touches them.

pub mod retention;
pub mod rollback;

pub use retention::{
    apply_retention, execute_retention, plan_retention, Decision, RetentionPlan, RetentionReport,
    DEFAULT_KEEP,
};
pub(crate) use rollback::retire_other_previous;
pub use rollback::{rollback, Rollback, RollbackRequest};

use crate::glance::{self, Glance, Hidden, Image, ImageFilter, ImageStatus};
use crate::stage::upload::{TAG_CANDIDATE, TAG_CURRENT, TAG_PREVIOUS};
use backon::{ExponentialBuilder, Retryable};
use std::collections::BTreeSet;
use std::time::Duration;

/// Tag of a generation that a rollback took out of service (kept, hidden).
pub const TAG_ROLLED_BACK: &str = "rolled-back";
/// Tag that pins a generation: retention never deletes it.
pub const TAG_KEEP: &str = "keep";

/// Why a lifecycle operation did not happen.
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
    /// The cloud holds no image of the profile that could tell the stable name.
    #[error(
        "cloud {cloud} holds no current or previous image of profile `{profile}`{}",
        if *.other_images { " (it has other images of it: pass --name NAME)" } else { "" }
    )]
    NoImages {
        /// Cloud name.
        cloud: String,
        /// Profile.
        profile: String,
        /// Whether the profile has images that carry neither tag.
        other_images: bool,
    },
    /// Several families of the profile have a current image, and none was chosen.
    #[error(
        "profile `{profile}` has current images under several names ({}): choose one with --name NAME",
        names.join(", ")
    )]
    AmbiguousName {
        /// Profile.
        profile: String,
        /// The stable names found.
        names: Vec<String>,
    },
    /// No generation is tagged `previous`, so there is nothing to roll back to.
    #[error(
        "`{name}` has no previous generation to roll back to{}",
        available_hint(available)
    )]
    NoPrevious {
        /// Stable name.
        name: String,
        /// Generations of the family, newest first.
        available: Vec<String>,
    },
    /// The asked generation is not in the family.
    #[error("`{name}` has no generation {generation}{}", available_hint(available))]
    GenerationNotFound {
        /// Stable name.
        name: String,
        /// The generation asked for.
        generation: String,
        /// Generations of the family, newest first.
        available: Vec<String>,
    },
    /// The target generation's image cannot serve as the current image.
    #[error(
        "generation {generation} of `{name}` (image {id}) is {status}, not active: it cannot become \
         current"
    )]
    NotActive {
        /// Stable name.
        name: String,
        /// Generation.
        generation: String,
        /// Image id.
        id: String,
        /// Its status.
        status: ImageStatus,
    },
    /// The target is a candidate of a publish (running or crashed).
    #[error(
        "generation {generation} of `{name}` (image {id}) is a candidate of a publish that has not \
         finished: only published generations can become current"
    )]
    Candidate {
        /// Stable name.
        name: String,
        /// Generation.
        generation: String,
        /// Image id.
        id: String,
    },
    /// Someone changed the family between reading it and changing it.
    #[error(
        "the current image of `{name}` changed while rolling back ({detail}): another publish or \
         rollback ran at the same time; nothing was changed, run the command again"
    )]
    ConcurrentChange {
        /// Stable name.
        name: String,
        /// What changed.
        detail: String,
    },
    /// The old current image was taken out of service but the target could not replace it,
    /// and putting the old one back failed too: the family has no current image.
    #[error(
        "rollback of `{name}` stopped half-way: image {old} was hidden, image {target} could not be \
         made current, and restoring {old} failed ({undo}); make one of them current by hand \
         (name `{name}`, visible, tag `current`) or run the command again"
    )]
    HalfDone {
        /// Stable name.
        name: String,
        /// The image that was current.
        old: String,
        /// The image that should have become current.
        target: String,
        /// Why restoring the old one failed, as text.
        undo: String,
        /// Why promoting the target failed.
        #[source]
        source: Box<glance::Error>,
    },
}

fn available_hint(available: &[String]) -> String {
    if available.is_empty() {
        String::new()
    } else {
        format!(" (its generations, newest first: {})", available.join(", "))
    }
}

impl Error {
    /// The command was asked something that needs a choice the user must make (exit code 2).
    pub fn is_usage(&self) -> bool {
        matches!(self, Error::AmbiguousName { .. })
            || matches!(self, Error::Glance { source, .. }
                if matches!(source.kind(), glance::ErrorKind::Auth | glance::ErrorKind::Config))
    }

    /// The cloud was left without a current image of the family (exit code 3).
    pub fn left_half_done(&self) -> bool {
        matches!(self, Error::HalfDone { .. })
    }
}

fn glance_err(what: impl Into<String>) -> impl FnOnce(glance::Error) -> Error {
    let what = what.into();
    move |source| Error::Glance { what, source }
}

/// A generation as reports show it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Generation {
    /// Image id.
    pub id: String,
    /// Image name.
    pub name: String,
    /// `hephaestus_generation` (or the first 8 characters of the id when it lacks one, as
    /// the upload stage names such an image).
    pub generation: String,
    /// Glance status.
    pub status: String,
    /// Whether the image is hidden.
    pub hidden: bool,
    /// Lifecycle tags (`current`, `previous`, `rolled-back`, `keep`).
    pub tags: Vec<String>,
    /// Creation time, RFC 3339.
    pub created_at: Option<String>,
}

impl Generation {
    /// The report view of `image`.
    pub fn of(image: &Image) -> Self {
        let lifecycle = [TAG_CURRENT, TAG_PREVIOUS, TAG_ROLLED_BACK, TAG_KEEP];
        Generation {
            id: image.id.clone(),
            name: image.display_name().to_string(),
            generation: generation_of(image),
            status: image.status.to_string(),
            hidden: image.os_hidden,
            tags: image
                .tags
                .iter()
                .filter(|t| lifecycle.contains(&t.as_str()))
                .cloned()
                .collect(),
            created_at: image.created_at.clone(),
        }
    }
}

/// The generation of `image`: its `hephaestus_generation`, else the first 8 characters of its
/// id (what the upload stage names a kept image that lacks the property).
pub fn generation_of(image: &Image) -> String {
    image
        .property("hephaestus_generation")
        .map(str::to_string)
        .unwrap_or_else(|| image.id.chars().take(8).collect())
}

/// The name a kept (hidden) generation of family `name` carries.
pub fn kept_name(name: &str, image: &Image) -> String {
    format!("{name}-{}", generation_of(image))
}

fn has_tag(image: &Image, tag: &str) -> bool {
    image.tags.iter().any(|t| t == tag)
}

/// Whether `image` is a published member of family `name`: the current image (stable name)
/// or a kept generation (`{name}-{generation}`); candidates are not members.
pub fn in_family(image: &Image, name: &str) -> bool {
    if has_tag(image, TAG_CANDIDATE) {
        return false;
    }
    let own = image.display_name();
    own == name || own == kept_name(name, image)
}

/// The family name `image` belongs to: its name without the `-{generation}` suffix.
pub fn family_of(image: &Image) -> String {
    let own = image.display_name();
    let suffix = format!("-{}", generation_of(image));
    own.strip_suffix(&suffix).unwrap_or(own).to_string()
}

/// The stable names of `images` (of one profile), sorted; candidates are left out.
pub fn families(images: &[Image]) -> Vec<String> {
    images
        .iter()
        .filter(|i| !has_tag(i, TAG_CANDIDATE))
        .map(family_of)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
}

/// Newest first: by creation time, then by generation (which starts with the build's UTC
/// minute), so the order is stable when Glance's second-resolution times tie.
pub(crate) fn newest_first(images: &mut [Image]) {
    images.sort_by(|a, b| {
        b.created_at
            .cmp(&a.created_at)
            .then_with(|| generation_of(b).cmp(&generation_of(a)))
            .then_with(|| b.id.cmp(&a.id))
    });
}

fn transient_backoff() -> ExponentialBuilder {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(500))
        .with_max_delay(Duration::from_secs(5))
        .with_max_times(3)
}

/// Every image of `profile` in the cloud, visible and hidden (two listings), retried while
/// Glance is temporarily unavailable.
pub async fn profile_images(glance: &Glance, profile: &str) -> Result<Vec<Image>, Error> {
    let filter = ImageFilter {
        properties: [("hephaestus_profile".to_string(), profile.to_string())].into(),
        hidden: Hidden::Include,
        ..ImageFilter::default()
    };
    (|| glance.list_images(&filter))
        .retry(transient_backoff())
        .when(glance::Error::is_transient)
        .await
        .map_err(glance_err(format!(
            "list the images of profile `{profile}` in cloud {}",
            glance.cloud()
        )))
}

/// The profiles that have Hephaestus images (tag `hephaestus`) in the cloud, sorted.
pub async fn profiles_in_cloud(glance: &Glance) -> Result<Vec<String>, Error> {
    let filter = ImageFilter {
        tags: vec!["hephaestus".to_string()],
        hidden: Hidden::Include,
        ..ImageFilter::default()
    };
    let images = (|| glance.list_images(&filter))
        .retry(transient_backoff())
        .when(glance::Error::is_transient)
        .await
        .map_err(glance_err(format!(
            "list the Hephaestus images of cloud {}",
            glance.cloud()
        )))?;
    Ok(images
        .iter()
        .filter_map(|i| i.property("hephaestus_profile").map(str::to_string))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde_json::json;

    /// A synthetic image of profile `lucy`.
    pub(crate) fn image(
        id: &str,
        name: &str,
        generation: &str,
        created: &str,
        tags: &[&str],
    ) -> Image {
        serde_json::from_value(json!({
            "id": id, "name": name, "status": "active", "visibility": "private",
            "os_hidden": !tags.contains(&"current"), "tags": tags,
            "created_at": created, "hephaestus_profile": "lucy",
            "hephaestus_generation": generation, "protected": false,
        }))
        .unwrap()
    }

    #[test]
    fn family_membership_uses_the_generation_property() {
        let cur = image("a", "h-lucy", "g2", "2026-01-02T00:00:00Z", &["current"]);
        let kept = image("b", "h-lucy-g1", "g1", "2026-01-01T00:00:00Z", &[]);
        // Starts with `h-lucy-` but is another family's current image.
        let other = image(
            "c",
            "h-lucy-test",
            "g3",
            "2026-01-03T00:00:00Z",
            &["current"],
        );
        let cand = image(
            "d",
            "h-lucy-g4",
            "g4",
            "2026-01-04T00:00:00Z",
            &["candidate"],
        );
        assert!(in_family(&cur, "h-lucy"));
        assert!(in_family(&kept, "h-lucy"));
        assert!(!in_family(&other, "h-lucy"));
        assert!(!in_family(&cand, "h-lucy"));
        assert_eq!(
            families(&[cur, kept, other, cand]),
            ["h-lucy", "h-lucy-test"]
        );
    }

    #[test]
    fn newest_first_breaks_ties_by_generation() {
        let mut images = vec![
            image(
                "a",
                "n-202601010000-aaaa",
                "202601010000-aaaa",
                "2026-01-01T00:00:00Z",
                &[],
            ),
            image(
                "b",
                "n",
                "202601010001-bbbb",
                "2026-01-01T00:00:00Z",
                &["current"],
            ),
            image(
                "c",
                "n-202601020000-cccc",
                "202601020000-cccc",
                "2026-01-02T00:00:00Z",
                &[],
            ),
        ];
        newest_first(&mut images);
        let ids: Vec<&str> = images.iter().map(|i| i.id.as_str()).collect();
        assert_eq!(ids, ["c", "b", "a"]);
    }
}
