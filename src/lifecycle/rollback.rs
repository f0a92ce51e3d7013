//! `rollback`: an earlier generation of a profile becomes current again, and the image it
//! replaces is kept, hidden, for a roll forward.
//!
//! Going back (to an older generation), the replaced image is tagged `rolled-back`; going
//! forward (to a newer one, e.g. undoing a rollback with `--to`), it is tagged `previous`,
//! exactly as a publish would have left it. Either way the target gets the stable name, is
//! unhidden and tagged `current` (and loses `previous`/`rolled-back`); the replaced image gets
//! `{name}-{generation}` and is hidden. After going back no generation is tagged `previous`,
//! so a second plain rollback changes nothing and going further back takes an explicit
//! `--to`; after going forward only the replaced image is, as after a publish.
//!
//! Order of the two changes: the old current image is taken out of service first, then the
//! target is made current. Promoting first would, if the second step failed, leave two
//! visible images tagged `current` under one name, and the upload stage picks the newest of
//! those — the very image being rolled back. Demoting first can only leave no current image,
//! which is repaired at once by restoring the old one; only if that fails too does the
//! command stop half-way (exit code 3, naming both images).
//!
//! Idempotent: asking for the generation that is already current, or rolling back again
//! when the current image is itself the result of a rollback, changes nothing.

use super::{
    generation_of, glance_err, has_tag, in_family, is_candidate_of, newest_first, patch,
    profile_images, Error, Generation, LIFECYCLE_TAGS, TAG_CANDIDATE, TAG_CURRENT, TAG_PREVIOUS,
    TAG_ROLLED_BACK,
};
use crate::error::error_chain;
use crate::glance::{Glance, Image, ImageStatus, PatchOp};
use std::collections::BTreeSet;

/// What to roll back.
#[derive(Debug, Clone, Copy)]
pub struct RollbackRequest<'a> {
    /// Profile.
    pub profile: &'a str,
    /// Stable name of the family; found from the profile's current image when absent.
    pub name: Option<&'a str>,
    /// Generation to make current (`hephaestus_generation`); the `previous` one when absent.
    pub to: Option<&'a str>,
}

/// What a rollback did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Rollback {
    /// Profile.
    pub profile: String,
    /// Stable name.
    pub name: String,
    /// False when nothing needed to change.
    pub changed: bool,
    /// One sentence for people.
    pub message: String,
    /// The current image afterwards.
    pub current: Option<Generation>,
    /// The image it replaced, afterwards (hidden, renamed, tagged `rolled-back` or
    /// `previous`).
    pub replaced: Option<Generation>,
}

fn is_current(image: &Image, name: &str) -> bool {
    has_tag(image, TAG_CURRENT) && image.display_name() == name
}

/// The stable name: asked for, else the name of the profile's current image, else (when a
/// crash left no current image) the family of its `previous` generation.
fn stable_name(cloud: &str, req: &RollbackRequest<'_>, images: &[Image]) -> Result<String, Error> {
    family_name(cloud, req.profile, req.name, images)
}

/// The stable name of `profile`'s family among `images`: `name` when given, else the name of
/// its current image, else (when a crash left no current image) the family of its `previous`
/// generation. Several current names need a choice ([`Error::AmbiguousName`]).
pub(crate) fn family_name(
    cloud: &str,
    profile: &str,
    name: Option<&str>,
    images: &[Image],
) -> Result<String, Error> {
    if let Some(name) = name {
        return Ok(name.to_string());
    }
    let published: Vec<&Image> = images
        .iter()
        .filter(|i| !has_tag(i, TAG_CANDIDATE))
        .collect();
    let currents: BTreeSet<String> = published
        .iter()
        .filter(|i| has_tag(i, TAG_CURRENT))
        .map(|i| i.display_name().to_string())
        .collect();
    let names = if currents.is_empty() {
        published
            .iter()
            .filter(|i| has_tag(i, TAG_PREVIOUS))
            .map(|i| super::family_of(i))
            .collect()
    } else {
        currents
    };
    let mut names = names.into_iter();
    match (names.next(), names.next()) {
        (Some(name), None) => Ok(name),
        (Some(first), Some(second)) => Err(Error::AmbiguousName {
            profile: profile.to_string(),
            names: [first, second].into_iter().chain(names).collect(),
        }),
        (None, _) => Err(Error::NoImages {
            cloud: cloud.to_string(),
            profile: profile.to_string(),
            other_images: !published.is_empty(),
        }),
    }
}

/// Roll `req.profile` back (or forward) to the previous or the named generation.
pub async fn rollback(glance: &Glance, req: &RollbackRequest<'_>) -> Result<Rollback, Error> {
    let images = profile_images(glance, req.profile).await?;
    let name = stable_name(glance.cloud(), req, &images)?;
    let mut family: Vec<Image> = images
        .iter()
        .filter(|i| in_family(i, &name))
        .cloned()
        .collect();
    newest_first(&mut family);
    let available: Vec<String> = family.iter().map(generation_of).collect();
    // Several would mean an interrupted demotion; the newest is the one people boot, as in
    // the upload stage.
    let current = family.iter().find(|i| is_current(i, &name)).cloned();
    let unchanged = |message: String| Rollback {
        profile: req.profile.to_string(),
        name: name.clone(),
        changed: false,
        message,
        current: current.as_ref().map(Generation::of),
        replaced: None,
    };

    let target = match req.to {
        Some(wanted) => {
            let matching: Vec<&Image> = family
                .iter()
                .filter(|i| generation_of(i) == wanted)
                .collect();
            let found = matching
                .iter()
                .find(|i| i.status == ImageStatus::Active)
                .or(matching.first());
            match found {
                Some(image) => (*image).clone(),
                None => {
                    // A candidate deserves its own message: it exists, but is not published.
                    let candidate = images
                        .iter()
                        .find(|i| is_candidate_of(i, &name) && generation_of(i) == wanted);
                    return Err(match candidate {
                        Some(c) => Error::Candidate {
                            name,
                            generation: wanted.to_string(),
                            id: c.id.clone(),
                        },
                        None => Error::GenerationNotFound {
                            name,
                            generation: wanted.to_string(),
                            available,
                        },
                    });
                }
            }
        }
        None => {
            let previous = family
                .iter()
                .find(|i| has_tag(i, TAG_PREVIOUS) && !is_current(i, &name));
            match (previous, &current) {
                (Some(p), _) => p.clone(),
                (None, Some(cur)) => {
                    // The current image came back by a rollback when a newer generation was
                    // rolled back from it: doing it again must not walk further back.
                    let position = |id: &str| family.iter().position(|i| i.id == id);
                    let cur_at = position(&cur.id);
                    let rolled = family
                        .iter()
                        .find(|i| has_tag(i, TAG_ROLLED_BACK) && position(&i.id) < cur_at);
                    if let Some(rolled) = rolled {
                        return Ok(unchanged(format!(
                            "`{name}` is already rolled back: generation {} is current, {} was \
                             rolled back; nothing changed (pass --to GENERATION to choose another \
                             generation)",
                            generation_of(cur),
                            generation_of(rolled)
                        )));
                    }
                    return Err(Error::NoPrevious { name, available });
                }
                (None, None) => return Err(Error::NoPrevious { name, available }),
            }
        }
    };

    if current.as_ref().is_some_and(|c| c.id == target.id) {
        return Ok(unchanged(format!(
            "generation {} already is the current image of `{name}` ({}); nothing changed",
            generation_of(&target),
            target.id
        )));
    }
    if target.status != ImageStatus::Active {
        return Err(Error::NotActive {
            name,
            generation: generation_of(&target),
            id: target.id.clone(),
            status: target.status,
        });
    }
    let going_back = match &current {
        Some(cur) => {
            let position = |id: &str| family.iter().position(|i| i.id == id);
            // newest first: a larger position is an older generation
            position(&target.id) > position(&cur.id)
        }
        None => true,
    };
    swap(
        glance,
        &name,
        &family,
        current.as_ref(),
        &target,
        going_back,
    )
    .await
    .map(|(current, replaced)| {
        let message =
            match &replaced {
                Some(r) => {
                    format!(
                    "generation {} is now the current image of `{name}` ({}); generation {} ({}) \
                     is hidden as `{}`, tagged `{}`",
                    current.generation,
                    current.id,
                    r.generation,
                    r.id,
                    r.name,
                    if going_back { TAG_ROLLED_BACK } else { TAG_PREVIOUS }
                )
                }
                None => format!(
                    "generation {} is now the current image of `{name}` ({}); there was no \
                     current image to replace",
                    current.generation, current.id
                ),
            };
        Rollback {
            profile: req.profile.to_string(),
            name: name.clone(),
            changed: true,
            message,
            current: Some(current),
            replaced,
        }
    })
}

/// Lifecycle tags that say where a generation stands; everything else (`hephaestus`,
/// `profile:…`, a user's `keep`) is carried over untouched.
fn without_lifecycle(tags: &[String]) -> impl Iterator<Item = String> + '_ {
    tags.iter()
        .filter(|t| !LIFECYCLE_TAGS.contains(&t.as_str()))
        .cloned()
}

/// Take `current` out of service, make `target` current; returns both afterwards.
async fn swap(
    glance: &Glance,
    name: &str,
    family: &[Image],
    current: Option<&Image>,
    target: &Image,
    going_back: bool,
) -> Result<(Generation, Option<Generation>), Error> {
    // Re-read both: a publish or another rollback may have run since the listing.
    let fresh_target = glance
        .get_image(&target.id)
        .await
        .map_err(glance_err(format!("read image {}", target.id)))?;
    if fresh_target.status != ImageStatus::Active {
        return Err(Error::NotActive {
            name: name.to_string(),
            generation: generation_of(&fresh_target),
            id: fresh_target.id.clone(),
            status: fresh_target.status,
        });
    }
    if is_current(&fresh_target, name) {
        return Err(Error::ConcurrentChange {
            name: name.to_string(),
            detail: format!("{} became current meanwhile", target.id),
        });
    }
    let mut replaced = None;
    if let Some(cur) = current {
        let fresh = glance
            .get_image(&cur.id)
            .await
            .map_err(glance_err(format!("read image {}", cur.id)))?;
        if !is_current(&fresh, name) {
            return Err(Error::ConcurrentChange {
                name: name.to_string(),
                detail: format!("{} is no longer current", cur.id),
            });
        }
        let tag = if going_back {
            TAG_ROLLED_BACK
        } else {
            TAG_PREVIOUS
        };
        let demote = [
            PatchOp::replace("name", super::kept_name(name, &fresh)),
            PatchOp::replace("os_hidden", true),
            PatchOp::tags(without_lifecycle(&fresh.tags).chain([tag.to_string()])),
        ];
        let demoted = patch(glance, &fresh.id, &demote)
            .await
            .map_err(glance_err(format!(
                "take the current image {} of `{name}` out of service (nothing was changed)",
                fresh.id
            )))?;
        replaced = Some((fresh, demoted));
    }

    let promote = [
        PatchOp::replace("name", name),
        PatchOp::replace("os_hidden", false),
        PatchOp::tags(without_lifecycle(&fresh_target.tags).chain([TAG_CURRENT.to_string()])),
    ];
    let promoted = match patch(glance, &target.id, &promote).await {
        Ok(image) => image,
        Err(source) => {
            let Some((old, _)) = replaced else {
                return Err(glance_err(format!(
                    "make {} the current image of `{name}`",
                    target.id
                ))(source));
            };
            let restore = [
                PatchOp::replace("name", name),
                PatchOp::replace("os_hidden", false),
                PatchOp::tags(old.tags.clone()),
            ];
            return Err(match patch(glance, &old.id, &restore).await {
                Ok(_) => glance_err(format!(
                    "make {} the current image of `{name}` ({} was restored as current)",
                    target.id, old.id
                ))(source),
                Err(undo) => Error::HalfDone {
                    name: name.to_string(),
                    old: old.id.clone(),
                    target: target.id.clone(),
                    undo: Box::new(undo),
                    source: Box::new(source),
                },
            });
        }
    };

    let replaced = replaced.map(|(_, demoted)| demoted);
    let untouched = [Some(target.id.as_str()), current.map(|c| c.id.as_str())];
    retire_other_previous(glance, name, family, &untouched).await;
    Ok((
        Generation::of(&promoted),
        replaced.as_ref().map(Generation::of),
    ))
}

/// Lift every hold on `profile` (of family `name` only, when given): its `rolled-back` images
/// lose the tag and become plain kept generations, so their builds may be published again.
/// Returns them, afterwards.
pub async fn release(
    glance: &Glance,
    profile: &str,
    name: Option<&str>,
) -> Result<Vec<Generation>, Error> {
    let images = profile_images(glance, profile).await?;
    let mut released = Vec::new();
    for image in images
        .iter()
        .filter(|i| has_tag(i, TAG_ROLLED_BACK) && name.is_none_or(|n| in_family(i, n)))
    {
        let tags: Vec<String> = image
            .tags
            .iter()
            .filter(|t| *t != TAG_ROLLED_BACK)
            .cloned()
            .collect();
        let after = patch(glance, &image.id, &[PatchOp::tags(tags)])
            .await
            .map_err(glance_err(format!("release {}", image.id)))?;
        released.push(Generation::of(&after));
    }
    Ok(released)
}

/// Removes the `previous` tag from every generation of family `name` among `family` except the
/// `untouched` ones. After a publish or a roll forward only the image just replaced stays
/// `previous`; after a rollback none does, since going further back takes an explicit `--to`.
/// `untouched` are the images just patched (their tags in `family` may be out of date).
pub(crate) async fn retire_other_previous(
    glance: &Glance,
    name: &str,
    family: &[Image],
    untouched: &[Option<&str>],
) {
    for image in family.iter().filter(|i| {
        in_family(i, name)
            && !untouched.contains(&Some(i.id.as_str()))
            && has_tag(i, TAG_PREVIOUS)
            && !is_current(i, name)
    }) {
        let tags: Vec<String> = image
            .tags
            .iter()
            .filter(|t| *t != TAG_PREVIOUS)
            .cloned()
            .collect();
        if let Err(e) = patch(glance, &image.id, &[PatchOp::tags(tags)]).await {
            tracing::warn!(
                "could not remove tag `previous` from older generation {} of `{name}`: {}",
                image.id,
                error_chain(&e)
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lifecycle::tests::image;

    fn req<'a>(name: Option<&'a str>) -> RollbackRequest<'a> {
        RollbackRequest {
            profile: "lucy",
            name,
            to: None,
        }
    }

    #[test]
    fn stable_name_comes_from_the_current_image() {
        let images = [
            image("a", "h-lucy", "g2", "2026-01-02T00:00:00Z", &["current"]),
            image(
                "b",
                "h-lucy-g1",
                "g1",
                "2026-01-01T00:00:00Z",
                &["previous"],
            ),
        ];
        assert_eq!(stable_name("c", &req(None), &images).unwrap(), "h-lucy");
        assert_eq!(stable_name("c", &req(Some("x")), &images).unwrap(), "x");
    }

    #[test]
    fn several_current_names_need_a_choice() {
        let images = [
            image("a", "h-lucy", "g2", "2026-01-02T00:00:00Z", &["current"]),
            image("b", "test-lucy", "g1", "2026-01-01T00:00:00Z", &["current"]),
        ];
        let err = stable_name("c", &req(None), &images).unwrap_err();
        assert!(err.is_usage());
        assert_eq!(
            err.to_string(),
            "profile `lucy` has current images under several names (h-lucy, test-lucy): \
             choose one with --name NAME"
        );
    }

    #[test]
    fn without_a_current_image_the_previous_one_names_the_family() {
        let images = [image(
            "b",
            "h-lucy-g1",
            "g1",
            "2026-01-01T00:00:00Z",
            &["previous"],
        )];
        assert_eq!(stable_name("c", &req(None), &images).unwrap(), "h-lucy");
        let none = stable_name("c", &req(None), &[]).unwrap_err();
        assert!(matches!(none, Error::NoImages { .. }), "{none}");
    }

    #[test]
    fn lifecycle_tags_are_replaced_and_others_kept() {
        let tags: Vec<String> = ["hephaestus", "current", "keep", "previous", "profile:lucy"]
            .map(String::from)
            .to_vec();
        let left: Vec<String> = without_lifecycle(&tags).collect();
        assert_eq!(left, ["hephaestus", "keep", "profile:lucy"]);
    }
}
