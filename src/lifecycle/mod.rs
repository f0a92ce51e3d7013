//! The image family: the one definition of how a profile's images live in a cloud, used by
//! validation, the tag stage, upload, promote, rollback, retention and `pipeline images`.
//!
//! - **Vocabulary**: the lifecycle tags ([`TAG_CANDIDATE`], [`TAG_CURRENT`], [`TAG_PREVIOUS`],
//!   [`TAG_ROLLED_BACK`], [`TAG_KEEP`]) and the property keys the pipeline computes
//!   ([`keys`], [`reserved_key`]); a profile may set none of them.
//! - **Names**: a profile's current image carries the stable name (upload option `name`,
//!   default [`DEFAULT_NAME_TEMPLATE`]); each kept generation is hidden and named
//!   `{name}-{generation}`, where the generation ([`generation`]) is the build's UTC minute
//!   and the first 8 characters of its store hash. A *family* is the stable name with all its
//!   kept generations. Members are found by their `hephaestus_profile` and
//!   `hephaestus_generation` properties, never by parsing names, so a family whose name starts
//!   with another family's name is never mixed up with it.
//! - **The candidate protocol** ([`publish`]): find the current image, sweep stale candidates,
//!   create a hidden candidate, send the bytes, compare hashes, make it current, delete it on
//!   any failure.
//! - **Afterwards**: [`rollback`](mod@rollback), [`retention`], and [`tagging`] for the tags CI sets.

pub mod check;
pub mod publish;
pub mod retention;
pub mod rollback;
pub mod tagging;

pub use publish::{Family, Fingerprint, Published};
pub use retention::{
    apply_retention, execute_retention, plan_retention, Decision, RetentionPlan, RetentionReport,
    DEFAULT_KEEP,
};
pub use rollback::{rollback, Rollback, RollbackRequest};

use crate::error::error_chain;
use crate::glance::{self, Glance, Hidden, Image, ImageFilter, ImageStatus, PatchOp};
use backon::{ExponentialBuilder, Retryable};
use std::collections::BTreeSet;
use std::time::Duration;

/// Tag of an image being uploaded: hidden, never left behind.
pub const TAG_CANDIDATE: &str = "candidate";
/// Tag of a profile's current image.
pub const TAG_CURRENT: &str = "current";
/// Tag of the image the current one replaced (the rollback target).
pub const TAG_PREVIOUS: &str = "previous";
/// Tag of a generation that a rollback took out of service (kept, hidden).
pub const TAG_ROLLED_BACK: &str = "rolled-back";
/// Tag that pins a generation: retention never deletes it.
pub const TAG_KEEP: &str = "keep";
/// Tag every image of this pipeline carries.
pub const TAG_HEPHAESTUS: &str = "hephaestus";
/// Prefix of the tag naming the profile (`profile:lucy`).
pub const TAG_PROFILE_PREFIX: &str = "profile:";

/// Tags that say where an image stands in its own cloud's lifecycle. They are set and moved
/// by the pipeline only, and never copied from one cloud to another.
pub const LIFECYCLE_TAGS: &[&str] = &[TAG_CANDIDATE, TAG_CURRENT, TAG_PREVIOUS, TAG_ROLLED_BACK];

/// The stable name when the pipeline does not choose one; `{profile}` is replaced.
pub const DEFAULT_NAME_TEMPLATE: &str = "hephaestus-{profile}";

/// Glance property keys the pipeline sets. Keys starting with [`RESERVED_KEY_PREFIX`] are
/// all reserved, whether listed here or not.
pub mod keys {
    /// Firmware the image boots with (`uefi` | `bios`).
    pub const FIRMWARE_TYPE: &str = "hw_firmware_type";
    /// Machine type (`q35` for UEFI).
    pub const MACHINE_TYPE: &str = "hw_machine_type";
    /// `linux`.
    pub const OS_TYPE: &str = "os_type";
    /// `nixos`.
    pub const OS_DISTRO: &str = "os_distro";
    /// The NixOS release.
    pub const OS_VERSION: &str = "os_version";
    /// `x86_64`.
    pub const ARCHITECTURE: &str = "architecture";
    /// The profile.
    pub const PROFILE: &str = "hephaestus_profile";
    /// The profile's role.
    pub const ROLE: &str = "hephaestus_role";
    /// The pipeline that published it.
    pub const PIPELINE: &str = "hephaestus_pipeline";
    /// The Nix store path of the build.
    pub const STORE_PATH: &str = "hephaestus_store_path";
    /// The generation (`{UTC yyyymmddHHMM}-{hash prefix}`).
    pub const GENERATION: &str = "hephaestus_generation";
    /// `<cloud>:<id>` of the image a promotion copied.
    pub const PROMOTED_FROM: &str = "hephaestus_promoted_from";
    /// openstacksdk's conventional sha256 of the data.
    pub const SDK_SHA256: &str = "owner_specified.openstack.sha256";
    /// openstacksdk's conventional md5 of the data.
    pub const SDK_MD5: &str = "owner_specified.openstack.md5";
    /// openstacksdk's conventional object name.
    pub const SDK_OBJECT: &str = "owner_specified.openstack.object";
    /// What every openstacksdk property key starts with: recorded after the bytes are checked.
    pub const SDK_PREFIX: &str = "owner_specified.openstack.";
}

/// Prefix of the pipeline's own property keys; a profile may set none of them.
pub const RESERVED_KEY_PREFIX: &str = "hephaestus_";

/// Firmware keys, derived from the profile's `boot` alone.
pub const FIRMWARE_KEYS: &[&str] = &[keys::FIRMWARE_TYPE, keys::MACHINE_TYPE];

/// Every other key the pipeline computes.
pub const COMPUTED_KEYS: &[&str] = &[
    keys::OS_TYPE,
    keys::OS_DISTRO,
    keys::OS_VERSION,
    keys::ARCHITECTURE,
    keys::PROFILE,
    keys::ROLE,
    keys::PIPELINE,
    keys::STORE_PATH,
    keys::GENERATION,
    keys::PROMOTED_FROM,
    keys::SDK_SHA256,
    keys::SDK_MD5,
    keys::SDK_OBJECT,
];

/// Why a property key is the pipeline's, not a profile's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReservedKey {
    /// Derived from `boot`.
    Firmware,
    /// Computed from the build, the digests or the pipeline.
    Computed,
}

/// Whether a profile may not set `key`, and why.
pub fn reserved_key(key: &str) -> Option<ReservedKey> {
    if FIRMWARE_KEYS.contains(&key) {
        Some(ReservedKey::Firmware)
    } else if COMPUTED_KEYS.contains(&key)
        || crate::scs::KEYS.contains(&key)
        || key.starts_with(RESERVED_KEY_PREFIX)
    {
        Some(ReservedKey::Computed)
    } else {
        None
    }
}

/// Whether a profile may not add `tag`: the lifecycle tags, `keep` (which would pin every
/// generation, so retention never prunes), `hephaestus` and `profile:*`.
pub fn reserved_tag(tag: &str) -> bool {
    LIFECYCLE_TAGS.contains(&tag)
        || tag == TAG_KEEP
        || tag == TAG_HEPHAESTUS
        || tag.starts_with(TAG_PROFILE_PREFIX)
}

/// The tags every image of `profile` carries, before its own.
pub fn base_tags(profile: &str) -> Vec<String> {
    vec![
        TAG_HEPHAESTUS.to_string(),
        format!("{TAG_PROFILE_PREFIX}{profile}"),
    ]
}

/// The stable name of `profile`'s current image under `template` (`{profile}` replaced).
pub fn stable_name(template: &str, profile: &str) -> String {
    template.replace("{profile}", profile)
}

/// `{UTC yyyymmddHHMM}-{first 8 characters of the store path's hash}`.
pub fn generation(at: time::OffsetDateTime, store_path: &crate::nix::StorePath) -> String {
    let utc = at.to_offset(time::UtcOffset::UTC);
    let hash: String = store_path.hash_part().chars().take(8).collect();
    format!(
        "{:04}{:02}{:02}{:02}{:02}-{hash}",
        utc.year(),
        u8::from(utc.month()),
        utc.day(),
        utc.hour(),
        utc.minute()
    )
}

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
    /// The family has generations but no current image to tag.
    #[error(
        "`{name}` has no current image in cloud {cloud}{} (run `pipeline check --cloud {cloud} \
         --repair`, or pass --generation)",
        available_hint(available)
    )]
    NoCurrent {
        /// Cloud name.
        cloud: String,
        /// Stable name.
        name: String,
        /// Generations of the family, newest first.
        available: Vec<String>,
    },
    /// A tag the lifecycle sets and moves itself.
    #[error(
        "tag `{tag}` is reserved: the image lifecycle owns the tags candidate, current, previous, \
         rolled-back, keep, hephaestus and profile:*, and only the pipeline sets or clears them"
    )]
    ReservedTag {
        /// The tag.
        tag: String,
    },
    /// A tag Glance cannot store.
    #[error(
        "tag \"{tag}\" cannot be stored: a tag is 1 to 255 characters without control characters"
    )]
    BadTag {
        /// The tag, escaped.
        tag: String,
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
         made current, and restoring {old} failed ({}); make one of them current by hand \
         (name `{name}`, visible, tag `current`) or run the command again",
        error_chain(undo.as_ref())
    )]
    HalfDone {
        /// Stable name.
        name: String,
        /// The image that was current.
        old: String,
        /// The image that should have become current.
        target: String,
        /// Why restoring the old one failed.
        undo: Box<glance::Error>,
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
    /// The command was asked something that needs a choice the user must make, or the cloud
    /// refused the credentials.
    pub fn is_usage(&self) -> bool {
        matches!(
            self,
            Error::AmbiguousName { .. } | Error::ReservedTag { .. } | Error::BadTag { .. }
        ) || matches!(self, Error::Glance { source, .. }
                if matches!(source.kind(), glance::ErrorKind::Auth | glance::ErrorKind::Config))
    }

    /// The cloud was left without a current image of the family.
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
    /// `hephaestus_generation` (or the first 8 characters of the id when it lacks one).
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
        Generation {
            id: image.id.clone(),
            name: image.display_name().to_string(),
            generation: generation_of(image),
            status: image.status.to_string(),
            hidden: image.os_hidden,
            tags: image
                .tags
                .iter()
                .filter(|t| LIFECYCLE_TAGS.contains(&t.as_str()) || *t == TAG_KEEP)
                .cloned()
                .collect(),
            created_at: image.created_at.clone(),
        }
    }
}

/// Where an image stands in its family, as `pipeline images` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// The current image.
    Current,
    /// The image the current one replaced.
    Previous,
    /// Taken out of service by a rollback.
    RolledBack,
    /// An upload in progress, or a crashed one's leftover.
    Candidate,
    /// An older generation.
    Kept,
}

impl Role {
    /// The role of `image` from its tags.
    pub fn of(image: &Image) -> Role {
        if has_tag(image, TAG_CURRENT) {
            Role::Current
        } else if has_tag(image, TAG_PREVIOUS) {
            Role::Previous
        } else if has_tag(image, TAG_ROLLED_BACK) {
            Role::RolledBack
        } else if has_tag(image, TAG_CANDIDATE) {
            Role::Candidate
        } else {
            Role::Kept
        }
    }

    /// The word shown for it.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Current => "current",
            Role::Previous => "previous",
            Role::RolledBack => "rolled-back",
            Role::Candidate => "candidate",
            Role::Kept => "kept",
        }
    }
}

/// The generation of `image`: its `hephaestus_generation`, else the first 8 characters of its
/// id (what a kept image that lacks the property is named after).
pub fn generation_of(image: &Image) -> String {
    image
        .property(keys::GENERATION)
        .map(str::to_string)
        .unwrap_or_else(|| image.id.chars().take(8).collect())
}

/// When `image` was built: its SCS `image_build_date` (the UTC start of the run that built it),
/// else the time its `hephaestus_generation` is named after, else Glance's `created_at` (for
/// an image published by something else). A promoted copy keeps the properties, so its age is
/// the build's, not the copy's.
pub fn built_at(image: &Image) -> Option<time::OffsetDateTime> {
    let minute = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]");
    let compact = time::macros::format_description!("[year][month][day][hour][minute]");
    let from_build_date = || {
        let text = image.property("image_build_date")?;
        time::PrimitiveDateTime::parse(text, &minute).ok()
    };
    let from_generation = || {
        let text = image.property(keys::GENERATION)?.split('-').next()?;
        time::PrimitiveDateTime::parse(text, &compact).ok()
    };
    from_build_date()
        .or_else(from_generation)
        .map(time::PrimitiveDateTime::assume_utc)
        .or_else(|| {
            let text = image.created_at.as_deref()?;
            time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).ok()
        })
}

/// The name a kept (hidden) generation of family `name` carries.
pub fn kept_name(name: &str, image: &Image) -> String {
    format!("{name}-{}", generation_of(image))
}

/// Whether `image` carries `tag`.
pub fn has_tag(image: &Image, tag: &str) -> bool {
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

/// Whether `image` is a candidate of family `name` (named `{name}-{generation}`).
pub fn is_candidate_of(image: &Image, name: &str) -> bool {
    has_tag(image, TAG_CANDIDATE) && image.display_name() == kept_name(name, image)
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

/// The rolled-back image of family `name` built from `store_path`, if any: a rollback took
/// that build out of service, so it is not published (or promoted) again until the hold is
/// released (`pipeline release`) or the flake builds something else.
pub fn held_by<'a>(images: &'a [Image], name: &str, store_path: &str) -> Option<&'a Image> {
    images.iter().find(|i| {
        has_tag(i, TAG_ROLLED_BACK)
            && in_family(i, name)
            && i.property(keys::STORE_PATH) == Some(store_path)
    })
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

/// Patch image `id`, retried while Glance fails transiently.
pub(crate) async fn patch(
    glance: &Glance,
    id: &str,
    ops: &[PatchOp],
) -> Result<Image, glance::Error> {
    // Every patch here replaces whole values, so repeating one after a lost answer is safe.
    (|| glance.update_image(id, ops))
        .retry(transient_backoff())
        .when(glance::Error::is_transient)
        .await
}

/// Backoff for a Glance read or an idempotent patch that failed transiently.
pub(crate) fn transient_backoff() -> ExponentialBuilder {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(500))
        .with_max_delay(Duration::from_secs(5))
        .with_max_times(3)
}

/// Every image of `profile` in the cloud, visible and hidden (two listings), retried while
/// Glance is temporarily unavailable.
pub async fn profile_images(glance: &Glance, profile: &str) -> Result<Vec<Image>, Error> {
    let filter = ImageFilter {
        properties: [(keys::PROFILE.to_string(), profile.to_string())].into(),
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

/// Every image of this pipeline (tag `hephaestus`) in the cloud, visible and hidden.
pub async fn pipeline_images(glance: &Glance) -> Result<Vec<Image>, Error> {
    let filter = ImageFilter {
        tags: vec![TAG_HEPHAESTUS.to_string()],
        hidden: Hidden::Include,
        ..ImageFilter::default()
    };
    (|| glance.list_images(&filter))
        .retry(transient_backoff())
        .when(glance::Error::is_transient)
        .await
        .map_err(glance_err(format!(
            "list the Hephaestus images of cloud {}",
            glance.cloud()
        )))
}

/// The profiles that have Hephaestus images in the cloud, sorted.
pub async fn profiles_in_cloud(glance: &Glance) -> Result<Vec<String>, Error> {
    let images = pipeline_images(glance).await?;
    Ok(images
        .iter()
        .filter_map(|i| i.property(keys::PROFILE).map(str::to_string))
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
        assert!(is_candidate_of(&cand, "h-lucy"));
        assert!(!is_candidate_of(&cand, "h-lu"));
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

    #[test]
    fn generation_is_utc_minute_and_hash_prefix() {
        let at = time::macros::datetime!(2026-11-26 13:05:59 +02:00);
        let path =
            crate::nix::StorePath::new("/nix/store/0123456789abcdfghijklmnpqrsvwxyz-x".to_string())
                .unwrap();
        assert_eq!(generation(at, &path), "202611261105-01234567");
    }

    #[test]
    fn every_reserved_tag_and_key_is_refused_from_one_list() {
        for tag in ["candidate", "current", "previous", "rolled-back", "keep"] {
            assert!(reserved_tag(tag), "{tag}");
        }
        assert!(reserved_tag("hephaestus") && reserved_tag("profile:lucy"));
        assert!(!reserved_tag("kubernetes") && !reserved_tag("tested"));
        assert_eq!(
            reserved_key("hw_firmware_type"),
            Some(ReservedKey::Firmware)
        );
        assert_eq!(
            reserved_key("hephaestus_anything"),
            Some(ReservedKey::Computed)
        );
        assert_eq!(
            reserved_key("owner_specified.openstack.md5"),
            Some(ReservedKey::Computed)
        );
        // The SCS keys are computed from `image_metadata:` (the guest agent among them).
        assert_eq!(
            reserved_key("hw_qemu_guest_agent"),
            Some(ReservedKey::Computed)
        );
        assert_eq!(reserved_key("hw_watchdog_action"), None);
    }

    #[test]
    fn roles_follow_the_tags() {
        let cur = image("a", "h", "g2", "2026-01-02T00:00:00Z", &["current"]);
        let rb = image("b", "h-g3", "g3", "2026-01-03T00:00:00Z", &["rolled-back"]);
        assert_eq!(Role::of(&cur), Role::Current);
        assert_eq!(Role::of(&rb).as_str(), "rolled-back");
    }
}
