//! Retention: how many generations of a family stay in the cloud, and deleting the rest.
//!
//! The rule, applied per profile and stable name:
//! - the `keep` newest active generations stay, the current one counting as the first of
//!   them (after a rollback the current image is not the newest, and still counts);
//! - the current and the previous generation always stay, even beyond `keep`, because they
//!   are what a rollback needs;
//! - an image that is `protected` or tagged `keep` always stays, and does not use up one of
//!   the `keep` places: pinning an old generation must not push a recent one out;
//! - an image that is not active (a leftover that never got its data) goes, since nothing
//!   can boot it or roll back to it; candidates are the upload stage's business and are not
//!   touched.
//!
//! Deciding ([`plan_retention`]) is separate from deleting ([`execute_retention`]) so that
//! `prune --dry-run` shows exactly what a real run would delete. When Glance refuses a delete
//! (409: the image is in use; 403: it became protected meanwhile) the image is hidden instead
//! and the report says so.

use super::{
    has_tag, in_family, newest_first, profile_images, transient_backoff, Error, Generation,
    TAG_CURRENT, TAG_KEEP, TAG_PREVIOUS, TAG_ROLLED_BACK,
};
use crate::error::error_chain;
use crate::glance::{self, ErrorKind, Glance, Image, ImageStatus, PatchOp};
use backon::Retryable;

/// Generations kept per family when nothing else is said (the current one included).
pub const DEFAULT_KEEP: u32 = 3;

/// One generation and why it stays or goes.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Decision {
    /// The generation.
    #[serde(flatten)]
    pub image: Generation,
    /// Why it stays or goes.
    pub reason: String,
    /// What happened when the decision was carried out, when worth saying (e.g. Glance
    /// refused the delete and the image was hidden instead).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// What retention would do to one family.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RetentionPlan {
    /// Profile.
    pub profile: String,
    /// Stable name of the family.
    pub name: String,
    /// Generations kept by count.
    pub keep: u32,
    /// What stays, newest first.
    pub kept: Vec<Decision>,
    /// What goes, newest first.
    pub delete: Vec<Decision>,
}

/// What retention did to one family.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RetentionReport {
    /// Profile.
    pub profile: String,
    /// Stable name of the family.
    pub name: String,
    /// Generations kept by count.
    pub keep: u32,
    /// What stays.
    pub kept: Vec<Decision>,
    /// What was deleted.
    pub deleted: Vec<Decision>,
    /// What Glance refused to delete and was hidden instead.
    pub hidden: Vec<Decision>,
    /// What could neither be deleted nor hidden; `detail` says why.
    pub failed: Vec<Decision>,
}

impl RetentionReport {
    /// True when every image that had to go is deleted or hidden.
    pub fn ok(&self) -> bool {
        self.failed.is_empty()
    }
}

fn is_protected(image: &Image) -> bool {
    image
        .properties
        .get("protected")
        .and_then(serde_json::Value::as_bool)
        .unwrap_or(false)
}

/// Decide, from the images of `profile`, which generations of family `name` stay and which
/// go. No side effect: `images` is what [`super::profile_images`] listed.
pub fn decide(images: &[Image], profile: &str, name: &str, keep: u32) -> RetentionPlan {
    let slots = keep.max(1);
    let mut family: Vec<Image> = images
        .iter()
        .filter(|i| in_family(i, name))
        .cloned()
        .collect();
    newest_first(&mut family);
    let is_current = |i: &Image| has_tag(i, TAG_CURRENT) && i.display_name() == name;
    // The current image counts first, wherever it stands in time.
    family.sort_by_key(|i| !is_current(i));
    let mut used = 0u32;
    let mut kept = Vec::new();
    let mut delete = Vec::new();
    for image in &family {
        let active = image.status == ImageStatus::Active;
        let mut stay = |reason: String| {
            kept.push(Decision {
                image: Generation::of(image),
                reason,
                detail: None,
            })
        };
        if is_current(image) {
            used += 1;
            stay("current generation".into());
        } else if has_tag(image, TAG_PREVIOUS) {
            if active && used < slots {
                used += 1;
            }
            stay("previous generation (the rollback target)".into());
        } else if is_protected(image) {
            stay("protected".into());
        } else if has_tag(image, TAG_KEEP) {
            stay(format!("tagged `{TAG_KEEP}`"));
        } else if has_tag(image, TAG_ROLLED_BACK) {
            // It is what holds its build from being published again.
            stay("rolled back: holds its build (`pipeline release` lifts the hold)".into());
        } else if active && used < slots {
            used += 1;
            stay(format!("one of the {slots} newest generations"));
        } else {
            let reason = if active {
                format!("older than the {slots} newest generations")
            } else {
                format!("not active ({}): nothing can boot it", image.status)
            };
            delete.push(Decision {
                image: Generation::of(image),
                reason,
                detail: None,
            });
        }
    }
    RetentionPlan {
        profile: profile.to_string(),
        name: name.to_string(),
        keep: slots,
        kept,
        delete,
    }
}

/// What retention would do to family `name` of `profile` (`keep` generations), read from the
/// cloud now.
pub async fn plan_retention(
    glance: &Glance,
    profile: &str,
    name: &str,
    keep: u32,
) -> Result<RetentionPlan, Error> {
    let images = profile_images(glance, profile).await?;
    Ok(decide(&images, profile, name, keep))
}

/// Carry out `plan`: delete what it says goes; hide what Glance refuses to delete (in use,
/// protected). One image's failure does not stop the others; it is in `failed`.
pub async fn execute_retention(glance: &Glance, plan: &RetentionPlan) -> RetentionReport {
    let mut report = RetentionReport {
        profile: plan.profile.clone(),
        name: plan.name.clone(),
        keep: plan.keep,
        kept: plan.kept.clone(),
        deleted: Vec::new(),
        hidden: Vec::new(),
        failed: Vec::new(),
    };
    for decision in &plan.delete {
        let id = decision.image.id.as_str();
        let deleted = (|| glance.delete_image(id))
            .retry(transient_backoff())
            .when(glance::Error::is_transient)
            .await;
        let with = |detail: String| Decision {
            detail: Some(detail),
            ..decision.clone()
        };
        match deleted {
            Ok(()) => {
                tracing::info!(
                    "{}: deleted generation {} ({id}): {}",
                    plan.name,
                    decision.image.generation,
                    decision.reason
                );
                report.deleted.push(decision.clone());
            }
            Err(e) if e.kind() == ErrorKind::NotFound => report
                .deleted
                .push(with("already deleted by someone else".into())),
            Err(e) if matches!(e.kind(), ErrorKind::Conflict | ErrorKind::Forbidden) => {
                let refusal = format!(
                    "Glance refused the delete (HTTP {}, {}: {})",
                    e.status().unwrap_or(0),
                    if e.kind() == ErrorKind::Conflict {
                        "in use"
                    } else {
                        "protected or not allowed"
                    },
                    error_chain(&e)
                );
                let ops = [PatchOp::replace("os_hidden", true)];
                let hide = (|| glance.update_image(id, &ops))
                    .retry(transient_backoff())
                    .when(glance::Error::is_transient)
                    .await;
                match hide {
                    Ok(_) => {
                        tracing::warn!("{}: {id}: {refusal}; hidden instead", plan.name);
                        report
                            .hidden
                            .push(with(format!("{refusal}; hidden instead")));
                    }
                    Err(h) => report.failed.push(with(format!(
                        "{refusal}; hiding it failed too: {}",
                        error_chain(&h)
                    ))),
                }
            }
            Err(e) => report
                .failed
                .push(with(format!("cannot delete it: {}", error_chain(&e)))),
        }
    }
    report
}

/// Apply retention to family `name` of `profile` in the cloud: keep `keep` generations
/// (the current one included; [`DEFAULT_KEEP`] is the usual value), never deleting the
/// current or previous generation, a protected image or one tagged `keep`. An error means the
/// family could not be read; failures of single deletes are in the report.
pub async fn apply_retention(
    glance: &Glance,
    profile: &str,
    name: &str,
    keep: u32,
) -> Result<RetentionReport, Error> {
    let plan = plan_retention(glance, profile, name, keep).await?;
    Ok(execute_retention(glance, &plan).await)
}

/// Retention after a publish into family `name` of `profile`: it never fails the publish that
/// succeeded; what it did is returned as a note for the report (empty when nothing changed),
/// and what it could not do is logged.
pub async fn after_publish(glance: &Glance, profile: &str, name: &str, keep: u32) -> String {
    match apply_retention(glance, profile, name, keep).await {
        Ok(r) if !r.deleted.is_empty() || !r.hidden.is_empty() || !r.ok() => format!(
            "; retention (keep {keep}): {} deleted, {} hidden, {} failed",
            r.deleted.len(),
            r.hidden.len(),
            r.failed.len()
        ),
        Ok(_) => String::new(),
        Err(e) => {
            tracing::warn!("{profile}: retention not applied: {}", error_chain(&e));
            String::new()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lifecycle::tests::image;
    use serde_json::json;

    fn generations(decisions: &[Decision]) -> Vec<&str> {
        decisions
            .iter()
            .map(|d| d.image.generation.as_str())
            .collect()
    }

    /// g1 … g5, g5 current and g4 previous, as five publishes leave them.
    fn five() -> Vec<Image> {
        (1..=5)
            .map(|n| {
                let tags: &[&str] = match n {
                    5 => &["hephaestus", "current"],
                    4 => &["hephaestus", "previous"],
                    _ => &["hephaestus"],
                };
                let name = if n == 5 {
                    "h".to_string()
                } else {
                    format!("h-g{n}")
                };
                image(
                    &format!("id{n}"),
                    &name,
                    &format!("g{n}"),
                    &format!("2026-01-0{n}T00:00:00Z"),
                    tags,
                )
            })
            .collect()
    }

    #[test]
    fn keeps_the_newest_counting_the_current_one() {
        let plan = decide(&five(), "lucy", "h", 3);
        assert_eq!(generations(&plan.kept), ["g5", "g4", "g3"]);
        assert_eq!(generations(&plan.delete), ["g2", "g1"]);
        assert_eq!(plan.delete[0].reason, "older than the 3 newest generations");
    }

    #[test]
    fn never_deletes_current_previous_protected_or_keep() {
        let mut images = five();
        images[0].tags.push("keep".into());
        images[2].properties.insert("protected".into(), json!(true));
        let plan = decide(&images, "lucy", "h", 1);
        assert_eq!(generations(&plan.kept), ["g5", "g4", "g3", "g1"]);
        assert_eq!(generations(&plan.delete), ["g2"]);
        // Pinned images do not use up a place: with 3, g2 stays as the third newest.
        let plan = decide(&images, "lucy", "h", 3);
        assert_eq!(generations(&plan.kept), ["g5", "g4", "g3", "g2", "g1"]);
        assert!(plan.delete.is_empty());
    }

    #[test]
    fn after_a_rollback_the_current_counts_first() {
        // g5 rolled back: g4 is current, g5 newest.
        let mut images = five();
        images[4].tags = vec!["rolled-back".into()];
        images[4].name = Some("h-g5".into());
        images[3].tags = vec!["current".into()];
        images[3].name = Some("h".into());
        let plan = decide(&images, "lucy", "h", 2);
        // The rolled-back image stays without using a place: it holds its build.
        assert_eq!(generations(&plan.kept), ["g4", "g5", "g3"]);
        assert_eq!(generations(&plan.delete), ["g2", "g1"]);
    }

    #[test]
    fn inactive_leftovers_go_and_other_families_are_untouched() {
        let mut images = five();
        images[1].status = ImageStatus::Queued;
        images.push(image(
            "x",
            "h-other",
            "g9",
            "2026-01-09T00:00:00Z",
            &["current"],
        ));
        let plan = decide(&images, "lucy", "h", 5);
        assert_eq!(generations(&plan.kept), ["g5", "g4", "g3", "g1"]);
        assert_eq!(generations(&plan.delete), ["g2"]);
        assert_eq!(
            plan.delete[0].reason,
            "not active (queued): nothing can boot it"
        );
    }
}
