//! Waiting for an image to reach a status: poll with a delay, give up after a timeout, and
//! name the image and its last status when giving up.

use std::time::Duration;

use tokio::time::Instant;

use super::api::Glance;
use super::error::Error;
use super::protocol::{Image, ImageStatus};

/// How often and how long [`wait_for_status`] polls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WaitPolicy {
    /// Pause between two polls.
    pub delay: Duration,
    /// Give up after this long.
    pub timeout: Duration,
}

impl Default for WaitPolicy {
    fn default() -> Self {
        Self {
            delay: Duration::from_millis(500),
            timeout: Duration::from_secs(600),
        }
    }
}

/// Statuses from which an image never becomes usable again without an admin.
fn is_dead_end(status: ImageStatus) -> bool {
    matches!(
        status,
        ImageStatus::Killed
            | ImageStatus::Deleted
            | ImageStatus::PendingDelete
            | ImageStatus::Deactivated
    )
}

/// Polls image `id` until its status is `wanted` and returns it.
///
/// Fails with [`Error::ImageFailed`] when the image reaches `killed`, `deleted`,
/// `pending_delete` or `deactivated` (unless that is `wanted`), and with [`Error::Timeout`]
/// when `policy.timeout` passes first, e.g. for an import stuck in `importing`. A transient
/// error of one poll does not end the wait; any other error does.
pub async fn wait_for_status(
    glance: &Glance,
    id: &str,
    wanted: ImageStatus,
    policy: &WaitPolicy,
) -> Result<Image, Error> {
    let start = Instant::now();
    let mut last: Option<(ImageStatus, String)> = None;
    loop {
        match glance.get_image(id).await {
            Ok(image) if image.status == wanted => return Ok(image),
            Ok(image) if is_dead_end(image.status) => {
                return Err(Error::ImageFailed {
                    id: id.to_owned(),
                    name: image.display_name().to_owned(),
                    status: image.status,
                    wanted,
                })
            }
            Ok(image) => last = Some((image.status, image.display_name().to_owned())),
            Err(e) if e.is_transient() => {
                tracing::warn!("polling image {id}: {e}; trying again");
            }
            Err(e) => return Err(e),
        }
        let waited = start.elapsed();
        if waited >= policy.timeout {
            let (last, name) = last.unwrap_or((ImageStatus::Unknown, "-".to_owned()));
            return Err(Error::Timeout {
                id: id.to_owned(),
                name,
                wanted,
                last,
                waited,
            });
        }
        tokio::time::sleep(policy.delay.min(policy.timeout - waited)).await;
    }
}

/// Polls image `id`, whose `glance-direct` import was started, until it is `active`. Glance
/// leaves a failed import `importing` (or puts it back to `queued`) and names the failed
/// stores in `os_glance_failed_import`: that ends the wait at once with
/// [`Error::ImportFailed`], carrying the reason from the image's failed import task.
pub async fn wait_for_import(
    glance: &Glance,
    id: &str,
    policy: &WaitPolicy,
) -> Result<Image, Error> {
    let start = Instant::now();
    loop {
        match glance.get_image(id).await {
            Ok(image) if image.status == ImageStatus::Active => return Ok(image),
            Ok(image) if is_dead_end(image.status) => {
                return Err(Error::ImageFailed {
                    id: id.to_owned(),
                    name: image.display_name().to_owned(),
                    status: image.status,
                    wanted: ImageStatus::Active,
                })
            }
            Ok(image) => {
                let failed = image
                    .property("os_glance_failed_import")
                    .unwrap_or_default()
                    .to_owned();
                if !failed.is_empty() {
                    let reason = match glance.image_tasks(id).await {
                        Ok(list) => list
                            .tasks
                            .iter()
                            .filter(|t| t.status == "failure")
                            .max_by(|a, b| a.updated_at.cmp(&b.updated_at))
                            .and_then(|t| t.message.clone())
                            .unwrap_or_else(|| "no failed task explains it".to_owned()),
                        Err(e) => format!("its tasks could not be read: {e}"),
                    };
                    return Err(Error::ImportFailed {
                        id: id.to_owned(),
                        stores: failed,
                        reason,
                    });
                }
            }
            Err(e) if e.is_transient() => {
                tracing::warn!("polling image {id}: {e}; trying again");
            }
            Err(e) => return Err(e),
        }
        let waited = start.elapsed();
        if waited >= policy.timeout {
            return Err(Error::Timeout {
                id: id.to_owned(),
                name: "-".to_owned(),
                wanted: ImageStatus::Active,
                last: ImageStatus::Importing,
                waited,
            });
        }
        tokio::time::sleep(policy.delay.min(policy.timeout - waited)).await;
    }
}
