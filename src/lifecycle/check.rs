//! `pipeline check`: the invariants of every image family in a cloud, and the repairs that are
//! safe to make without a person deciding.
//!
//! The invariants, per profile and stable name:
//! 1. exactly one visible image tagged `current`, named the stable name;
//! 2. every other generation hidden and named `{name}-{generation}`;
//! 3. no candidate older than the stale threshold (a run that died left it);
//! 4. none of the pipeline's images `queued`, `saving`, `uploading`, `importing` or `killed`,
//!    except candidates a run is uploading right now;
//! 5. the `hephaestus_*` properties every published image carries.
//!
//! `--repair` deletes stale candidates and dead images, hides and renames stray generations,
//! retags extra `current` images (the newest stays current), and, when a family has no visible
//! current image, shows again its `previous` generation: what a publish that stopped half-way
//! had retired. Missing properties are only reported: their values cannot be guessed.

use super::publish::STALE_AFTER;
use super::{
    family_of, generation_of, has_tag, kept_name, keys, newest_first, patch, profile_images,
    profiles_in_cloud, Error, TAG_CANDIDATE, TAG_CURRENT, TAG_PREVIOUS,
};
use crate::glance::{Glance, Image, ImageStatus, PatchOp};
use std::collections::BTreeMap;

/// The properties every published image of the pipeline carries.
pub const REQUIRED_KEYS: &[&str] = &[
    keys::PROFILE,
    keys::ROLE,
    keys::PIPELINE,
    keys::STORE_PATH,
    keys::GENERATION,
];

/// One broken invariant.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Finding {
    /// Profile.
    pub profile: String,
    /// Stable name of the family.
    pub name: String,
    /// The image concerned (none when the family lacks something).
    pub image: Option<String>,
    /// What is wrong.
    pub problem: String,
    /// What `--repair` does about it, if it is safe to do.
    pub repair: Option<Repair>,
}

/// A repair `--repair` may make.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "action", rename_all = "kebab-case")]
pub enum Repair {
    /// Delete the image (stale candidate, dead upload).
    Delete {
        /// Image id.
        id: String,
    },
    /// Hide the image, name it `name`, set its tags.
    Retire {
        /// Image id.
        id: String,
        /// Its kept name.
        name: String,
        /// Its tags afterwards.
        tags: Vec<String>,
    },
    /// Make the image the family's current one again.
    Restore {
        /// Image id.
        id: String,
        /// The stable name.
        name: String,
        /// Its tags afterwards.
        tags: Vec<String>,
    },
}

impl std::fmt::Display for Repair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Repair::Delete { id } => write!(f, "delete {id}"),
            Repair::Retire { id, name, .. } => write!(f, "hide {id} as `{name}`, not current"),
            Repair::Restore { id, name, .. } => {
                write!(f, "make {id} the visible current `{name}` again")
            }
        }
    }
}

/// A repair that was made or failed.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Change {
    /// The repair.
    #[serde(flatten)]
    pub repair: Repair,
    /// Whether Glance accepted it.
    pub ok: bool,
    /// Why it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

fn is_stale(image: &Image, now: time::OffsetDateTime) -> bool {
    image
        .updated_at
        .as_deref()
        .or(image.created_at.as_deref())
        .and_then(|t| {
            time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).ok()
        })
        .is_some_and(|t| now - t > STALE_AFTER)
}

fn unfinished(status: ImageStatus) -> bool {
    matches!(
        status,
        ImageStatus::Queued
            | ImageStatus::Saving
            | ImageStatus::Uploading
            | ImageStatus::Importing
            | ImageStatus::Killed
    )
}

fn without(tags: &[String], drop: &[&str]) -> Vec<String> {
    tags.iter()
        .filter(|t| !drop.contains(&t.as_str()))
        .cloned()
        .collect()
}

/// The findings for the images of one profile, at time `now`.
pub fn findings(profile: &str, images: &[Image], now: time::OffsetDateTime) -> Vec<Finding> {
    let mut out = Vec::new();
    let finding = |name: &str, image: Option<&Image>, problem: String, repair| Finding {
        profile: profile.to_string(),
        name: name.to_string(),
        image: image.map(|i| i.id.clone()),
        problem,
        repair,
    };
    let (candidates, published): (Vec<&Image>, Vec<&Image>) =
        images.iter().partition(|i| has_tag(i, TAG_CANDIDATE));
    for c in candidates {
        if is_stale(c, now) {
            out.push(finding(
                &family_of(c),
                Some(c),
                format!(
                    "candidate {} ({}) was left by a run that died: untouched for more than {} h",
                    c.display_name(),
                    c.status,
                    STALE_AFTER.whole_hours()
                ),
                Some(Repair::Delete { id: c.id.clone() }),
            ));
        }
    }
    let mut by_family: BTreeMap<String, Vec<Image>> = BTreeMap::new();
    for image in published {
        // A current image carries the stable name; any other, `{name}-{generation}`.
        let name = if has_tag(image, TAG_CURRENT) && !image.os_hidden {
            image.display_name().to_string()
        } else {
            family_of(image)
        };
        by_family.entry(name).or_default().push(image.clone());
    }
    for (name, mut family) in by_family {
        newest_first(&mut family);
        for image in &family {
            if unfinished(image.status) {
                out.push(finding(
                    &name,
                    Some(image),
                    format!(
                        "{} is {}: nothing can boot it",
                        image.display_name(),
                        image.status
                    ),
                    Some(Repair::Delete {
                        id: image.id.clone(),
                    })
                    .filter(|_| !has_tag(image, TAG_CURRENT)),
                ));
            }
            let missing: Vec<&str> = REQUIRED_KEYS
                .iter()
                .copied()
                .filter(|k| image.property(k).is_none())
                .collect();
            if !missing.is_empty() {
                out.push(finding(
                    &name,
                    Some(image),
                    format!(
                        "{} lacks {}: it was not published by this pipeline, or was changed by \
                         hand",
                        image.display_name(),
                        missing.join(", ")
                    ),
                    None,
                ));
            }
        }
        let shown_current: Vec<&Image> = family
            .iter()
            .filter(|i| has_tag(i, TAG_CURRENT) && !i.os_hidden && i.display_name() == name)
            .collect();
        // The newest shown current one is the one people boot; the others are retired.
        for extra in shown_current.iter().skip(1) {
            out.push(finding(
                &name,
                Some(extra),
                format!(
                    "a second visible `current` image of `{name}` (generation {}); {} is newer",
                    generation_of(extra),
                    shown_current[0].id
                ),
                Some(Repair::Retire {
                    id: extra.id.clone(),
                    name: kept_name(&name, extra),
                    tags: without(&extra.tags, &[TAG_CURRENT]),
                }),
            ));
        }
        for image in family.iter().filter(|i| {
            !shown_current.iter().any(|c| c.id == i.id)
                && (!i.os_hidden || i.display_name() != kept_name(&name, i))
        }) {
            out.push(finding(
                &name,
                Some(image),
                format!(
                    "generation {} is {} and named `{}`: a generation that is not current is \
                     hidden and named `{}`",
                    generation_of(image),
                    if image.os_hidden { "hidden" } else { "visible" },
                    image.display_name(),
                    kept_name(&name, image)
                ),
                Some(Repair::Retire {
                    id: image.id.clone(),
                    name: kept_name(&name, image),
                    tags: without(&image.tags, &[TAG_CURRENT]),
                }),
            ));
        }
        if shown_current.is_empty() {
            let restore = family
                .iter()
                .find(|i| has_tag(i, TAG_PREVIOUS) && i.status == ImageStatus::Active);
            out.push(finding(
                &name,
                None,
                format!(
                    "no visible `current` image of `{name}`{}",
                    match restore {
                        Some(p) => format!(" (its previous generation is {})", p.id),
                        None => " and no previous generation to restore: publish it again, or \
                                 `pipeline rollback --to GENERATION`"
                            .into(),
                    }
                ),
                restore.map(|p| Repair::Restore {
                    id: p.id.clone(),
                    name: name.clone(),
                    tags: without(&p.tags, &[TAG_PREVIOUS])
                        .into_iter()
                        .chain([TAG_CURRENT.to_string()])
                        .collect(),
                }),
            ));
        }
    }
    out
}

/// Check `profiles` (every profile with images in the cloud when empty), only the families
/// named by `name` (`{profile}` replaced) when given.
pub async fn check(
    glance: &Glance,
    profiles: &[String],
    name: Option<&str>,
) -> Result<Vec<Finding>, Error> {
    let profiles = if profiles.is_empty() {
        profiles_in_cloud(glance).await?
    } else {
        profiles.to_vec()
    };
    let now = time::OffsetDateTime::now_utc();
    let mut out = Vec::new();
    for profile in profiles {
        let images = profile_images(glance, &profile).await?;
        let only = name.map(|n| super::stable_name(n, &profile));
        out.extend(
            findings(&profile, &images, now)
                .into_iter()
                .filter(|f| only.as_ref().is_none_or(|n| &f.name == n)),
        );
    }
    Ok(out)
}

/// Make every safe repair of `found`, in order; returns each change and whether it worked.
pub async fn repair(glance: &Glance, found: &[Finding]) -> Vec<Change> {
    let mut changes = Vec::new();
    for repair in found.iter().filter_map(|f| f.repair.clone()) {
        let result = match &repair {
            Repair::Delete { id } => glance.delete_image(id).await.map(|_| ()),
            Repair::Retire { id, name, tags } => patch(
                glance,
                id,
                &[
                    PatchOp::replace("name", name.as_str()),
                    PatchOp::replace("os_hidden", true),
                    PatchOp::tags(tags.clone()),
                ],
            )
            .await
            .map(|_| ()),
            Repair::Restore { id, name, tags } => patch(
                glance,
                id,
                &[
                    PatchOp::replace("name", name.as_str()),
                    PatchOp::replace("os_hidden", false),
                    PatchOp::tags(tags.clone()),
                ],
            )
            .await
            .map(|_| ()),
        };
        changes.push(Change {
            repair,
            ok: result.is_ok(),
            error: result.err().map(|e| crate::error::error_chain(&e)),
        });
    }
    changes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lifecycle::tests::image;

    fn now() -> time::OffsetDateTime {
        time::macros::datetime!(2026-01-10 00:00 UTC)
    }

    fn complete(mut i: Image) -> Image {
        for k in REQUIRED_KEYS {
            i.properties
                .entry(k.to_string())
                .or_insert_with(|| serde_json::Value::String("x".into()));
        }
        i
    }

    #[test]
    fn a_clean_family_has_no_finding() {
        let mut old = complete(image(
            "o",
            "h-g1",
            "g1",
            "2026-01-01T00:00:00Z",
            &["previous"],
        ));
        old.os_hidden = true;
        let cur = complete(image("c", "h", "g2", "2026-01-02T00:00:00Z", &["current"]));
        assert_eq!(findings("lucy", &[old, cur], now()), []);
    }

    #[test]
    fn two_visible_currents_keep_the_newest_and_a_stale_candidate_is_deleted() {
        let old = complete(image("o", "h", "g1", "2026-01-01T00:00:00Z", &["current"]));
        let cur = complete(image("c", "h", "g2", "2026-01-02T00:00:00Z", &["current"]));
        let mut cand = complete(image(
            "x",
            "h-g3",
            "g3",
            "2026-01-03T00:00:00Z",
            &["candidate"],
        ));
        cand.os_hidden = true;
        cand.status = ImageStatus::Saving;
        let found = findings("lucy", &[old, cur, cand], now());
        let repairs: Vec<String> = found
            .iter()
            .filter_map(|f| f.repair.as_ref().map(ToString::to_string))
            .collect();
        assert_eq!(
            repairs,
            ["delete x", "hide o as `h-g1`, not current"],
            "{found:#?}"
        );
    }

    #[test]
    fn no_visible_current_restores_the_previous_generation() {
        let mut prev = complete(image(
            "p",
            "h-g1",
            "g1",
            "2026-01-01T00:00:00Z",
            &["previous"],
        ));
        prev.os_hidden = true;
        let found = findings("lucy", &[prev], now());
        assert_eq!(found.len(), 1, "{found:#?}");
        assert_eq!(
            found[0].repair,
            Some(Repair::Restore {
                id: "p".into(),
                name: "h".into(),
                tags: vec!["current".into()],
            })
        );
    }
}
