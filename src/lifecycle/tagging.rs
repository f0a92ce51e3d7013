//! `tag`: a person's or a CI's own tags (`tested`, say) set on or cleared from a profile's
//! current image, or one of its kept generations, so that `promote --require-tag` can wait
//! for them.
//!
//! The lifecycle's reserved tags ([`super::reserved_tag`]) are refused both ways: setting
//! `current` by hand would give a family two current images, and clearing it none. Every
//! target is found before anything changes, so a profile without a current image, or an
//! unknown generation, stops the command with nothing tagged.

use super::rollback::family_name;
use super::{
    generation_of, glance_err, has_tag, in_family, newest_first, patch, profile_images, Error,
    Role, TAG_CURRENT,
};
use crate::glance::{Glance, Image, PatchOp};

/// The longest tag Glance stores.
pub const MAX_TAG_LEN: usize = 255;

/// Whether tags are set or cleared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    /// Add the tags the image lacks.
    Set,
    /// Remove the tags the image has.
    Remove,
}

/// Which image of a profile to tag.
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    /// Profile.
    pub profile: &'a str,
    /// Stable name of the family; found from the profile's current image when absent.
    pub name: Option<&'a str>,
    /// Generation (`hephaestus_generation`) to tag; the current image when absent.
    pub generation: Option<&'a str>,
}

/// An image chosen by [`resolve`], not yet changed.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// Profile.
    pub profile: String,
    /// Stable name of its family.
    pub name: String,
    /// The image as it was listed.
    pub image: Image,
}

/// What tagging one image did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Tagged {
    /// Profile.
    pub profile: String,
    /// Stable name of the family.
    pub name: String,
    /// Image id.
    pub id: String,
    /// The image's own name.
    pub image_name: String,
    /// Its generation.
    pub generation: String,
    /// Where it stands in its family (`current`, `previous`, …).
    pub role: Role,
    /// False when the image already had (or already lacked) every tag.
    pub changed: bool,
    /// Every tag of the image afterwards.
    pub tags: Vec<String>,
}

/// Refuses a tag the lifecycle owns, an empty one, or one longer than Glance stores.
pub fn check_tag(tag: &str) -> Result<(), Error> {
    if super::reserved_tag(tag) {
        return Err(Error::ReservedTag {
            tag: tag.to_string(),
        });
    }
    if tag.is_empty() || tag.len() > MAX_TAG_LEN || tag.chars().any(char::is_control) {
        return Err(Error::BadTag {
            tag: tag.escape_debug().to_string(),
        });
    }
    Ok(())
}

/// The image `target` names: the family's current image, or its generation `G`.
pub async fn resolve(glance: &Glance, target: &Target<'_>) -> Result<Resolved, Error> {
    let images = profile_images(glance, target.profile).await?;
    let name = family_name(glance.cloud(), target.profile, target.name, &images)?;
    let mut family: Vec<Image> = images.into_iter().filter(|i| in_family(i, &name)).collect();
    newest_first(&mut family);
    let found = match target.generation {
        Some(wanted) => family.iter().find(|i| generation_of(i) == wanted),
        None => family
            .iter()
            .find(|i| has_tag(i, TAG_CURRENT) && i.display_name() == name),
    };
    match found {
        Some(image) => Ok(Resolved {
            profile: target.profile.to_string(),
            name,
            image: image.clone(),
        }),
        None => {
            let available = family.iter().map(generation_of).collect();
            Err(match target.generation {
                Some(wanted) => Error::GenerationNotFound {
                    name,
                    generation: wanted.to_string(),
                    available,
                },
                None => Error::NoCurrent {
                    cloud: glance.cloud().to_string(),
                    name,
                    available,
                },
            })
        }
    }
}

/// Sets or clears `tags` on the resolved image. The image is read again first, so tags that
/// others set since it was listed are kept.
pub async fn apply(
    glance: &Glance,
    resolved: &Resolved,
    action: Action,
    tags: &[String],
) -> Result<Tagged, Error> {
    let id = &resolved.image.id;
    let fresh = glance
        .get_image(id)
        .await
        .map_err(glance_err(format!("read image {id}")))?;
    let mut after = fresh.tags.clone();
    match action {
        Action::Set => {
            for tag in tags {
                if !after.contains(tag) {
                    after.push(tag.clone());
                }
            }
        }
        Action::Remove => after.retain(|t| !tags.contains(t)),
    }
    let changed = after != fresh.tags;
    let image = if changed {
        patch(glance, id, &[PatchOp::tags(after)])
            .await
            .map_err(glance_err(format!("change the tags of image {id}")))?
    } else {
        fresh
    };
    let mut tags = image.tags.clone();
    tags.sort();
    Ok(Tagged {
        profile: resolved.profile.clone(),
        name: resolved.name.clone(),
        id: image.id.clone(),
        image_name: image.display_name().to_string(),
        generation: generation_of(&image),
        role: Role::of(&image),
        changed,
        tags,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_lifecycle_tag_is_refused_and_a_ci_tag_is_not() {
        for tag in [
            "candidate",
            "current",
            "previous",
            "rolled-back",
            "keep",
            "hephaestus",
            "profile:lucy",
        ] {
            let err = check_tag(tag).unwrap_err();
            assert!(err.is_usage(), "{tag}: {err}");
            assert!(err.to_string().contains("reserved"), "{err}");
        }
        check_tag("tested").unwrap();
        check_tag("smoke:passed-2026").unwrap();
    }

    #[test]
    fn empty_overlong_and_control_tags_are_refused() {
        for tag in [String::new(), "x".repeat(256), "a\nb".to_string()] {
            let err = check_tag(&tag).unwrap_err();
            assert!(matches!(err, Error::BadTag { .. }), "{err}");
            assert!(err.is_usage());
        }
        check_tag(&"x".repeat(255)).unwrap();
    }
}
