//! The run report: what happened to each image, printed as text on stderr and as one JSON
//! document on stdout (`--json`) or into a file (`--report FILE`), per DESIGN §8.

use crate::error::Exit;
use crate::firmware::Boot;
use serde::Serialize;
use std::collections::BTreeMap;

/// The outcome of a whole run.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Pipeline name.
    pub pipeline: String,
    /// clouds.yaml entry, when the pipeline publishes (the first, when it publishes into
    /// several).
    pub cloud: Option<String>,
    /// Every clouds.yaml entry the pipeline publishes into, in order.
    pub clouds: Vec<String>,
    /// True when no image failed.
    pub ok: bool,
    /// True for `--dry-run`: nothing was built, checked or published.
    pub dry_run: bool,
    /// RFC 3339, UTC.
    pub started_at: String,
    /// RFC 3339, UTC.
    pub finished_at: String,
    /// One entry per profile, in the pipeline's order.
    pub images: Vec<ImageReport>,
}

/// What happened to one profile's image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ImageOutcome {
    /// Uploaded and made current.
    Published,
    /// Already current in the cloud with the same store path and hashes; nothing sent.
    Skipped,
    /// The flake would build exactly what the cloud's current image is: nothing built or sent.
    Unchanged,
    /// The flake builds what a rollback took out of service: nothing was published.
    Held,
    /// Every stage passed and the pipeline has no upload stage.
    Verified,
    /// `--dry-run`: what would run was shown, nothing was done.
    Planned,
    /// A stage failed; nothing was left half-published.
    Failed,
}

/// Status of one stage of one image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StageStatus {
    /// Ran and succeeded.
    Ok,
    /// Ran and failed.
    Failed,
    /// Did not run (dry run, an earlier failure, or nothing to do).
    Skipped,
    /// Not run again: an earlier run's result for the same immutable input stands (a boot
    /// check of the same store path, firmware, marker and QEMU).
    Cached,
}

/// One stage of one image.
#[derive(Debug, Clone, Serialize)]
pub struct StageReport {
    /// Stage name.
    pub stage: String,
    /// What happened.
    pub status: StageStatus,
    /// Wall time.
    pub seconds: f64,
    /// What it did or would do, for humans.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// One profile's image.
#[derive(Debug, Clone, Serialize)]
pub struct ImageReport {
    /// Profile name.
    pub profile: String,
    /// Outcome.
    pub status: ImageOutcome,
    /// Firmware tagged.
    pub firmware: Boot,
    /// Glance image id, once created.
    pub image_id: Option<String>,
    /// Glance image name.
    pub image_name: Option<String>,
    /// Bytes of image data sent to the cloud (0 when skipped).
    pub bytes_sent: u64,
    /// When the image current in the cloud after the run was built (RFC 3339, UTC): the run's
    /// start for an image it published, the current image's build date when nothing was
    /// published; `null` when unknown or when the pipeline publishes nothing.
    pub image_built_at: Option<String>,
    /// Seconds from starting QEMU to the boot marker (`boot-check`).
    pub boot_seconds: Option<f64>,
    /// Which boot check ran: `config-drive` (the image read its metadata) or `none`.
    pub boot_metadata: Option<crate::boot::Metadata>,
    /// The host name the image reported from its config drive.
    pub boot_hostname: Option<String>,
    /// A failed attempt's candidate could not be deleted: the cloud may hold a half-made,
    /// hidden image (the error names it).
    pub cleanup_failed: bool,
    /// Store path of the build.
    pub store_path: Option<String>,
    /// Image file size in bytes.
    pub size: Option<u64>,
    /// Hex sha256 of the image file.
    pub sha256: Option<String>,
    /// Hex sha512 of the image file (Glance's `os_hash_value`).
    pub sha512: Option<String>,
    /// Hex md5 of the image file (Glance's `checksum`).
    pub md5: Option<String>,
    /// Glance properties set (or to be set) on the image.
    pub properties: BTreeMap<String, String>,
    /// Glance tags set on the image.
    pub tags: Vec<String>,
    /// Per-stage outcome, in order.
    pub stages: Vec<StageReport>,
    /// What each target cloud holds of this build, in the run's cloud order (empty when the
    /// chain stopped before any cloud was asked).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub clouds: Vec<CloudReport>,
    /// Why the image is held, and the command that lifts the hold.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub held: Option<String>,
    /// The error chain of the failure, if any.
    pub error: Option<String>,
}

/// One target cloud's part of an image's publish.
#[derive(Debug, Clone, Serialize)]
pub struct CloudReport {
    /// clouds.yaml entry.
    pub cloud: String,
    /// `published`, `skipped` (already current there), `held` or `failed`.
    pub status: ImageOutcome,
    /// The image current there after the run.
    pub image_id: Option<String>,
    /// Bytes of image data sent to it (0 when skipped).
    pub bytes_sent: u64,
    /// A candidate there could not be deleted.
    pub cleanup_failed: bool,
    /// Why the build is held there, and the command that lifts the hold.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub held: Option<String>,
    /// Why it failed there.
    pub error: Option<String>,
}

impl Report {
    /// Exit code per DESIGN §7: 0 when every image is fine, 1 when one failed, 3 when a
    /// failed image's cleanup failed too.
    pub fn exit(&self) -> Exit {
        if self.images.iter().any(|i| i.cleanup_failed) {
            Exit::Cleanup
        } else if self.ok {
            Exit::Success
        } else {
            Exit::Failed
        }
    }

    /// The human summary, one block per image.
    pub fn render_text(&self) -> String {
        let mut out = String::new();
        for image in &self.images {
            out.push_str(&format!(
                "{:<8} {:<9} firmware={}",
                image.profile,
                format!("{:?}", image.status).to_lowercase(),
                image.firmware
            ));
            if let Some(id) = &image.image_id {
                out.push_str(&format!(" id={id}"));
            }
            if let Some(sp) = &image.store_path {
                out.push_str(&format!(" {sp}"));
            }
            out.push('\n');
            for s in &image.stages {
                out.push_str(&format!(
                    "    {:<14} {:<7} {:>7.2}s",
                    s.stage,
                    format!("{:?}", s.status).to_lowercase(),
                    s.seconds
                ));
                if let Some(note) = &s.note {
                    out.push_str(&format!("  {note}"));
                }
                out.push('\n');
            }
            if image.clouds.len() > 1 {
                for c in &image.clouds {
                    out.push_str(&format!(
                        "    cloud {:<12} {:<9}",
                        c.cloud,
                        format!("{:?}", c.status).to_lowercase()
                    ));
                    if let Some(id) = &c.image_id {
                        out.push_str(&format!(" id={id}"));
                    }
                    out.push_str(&format!(" {} bytes sent", c.bytes_sent));
                    out.push('\n');
                }
            }
            if let Some(h) = &image.held {
                out.push_str(&format!("    {h}\n"));
            }
            if let Some(e) = &image.error {
                out.push_str(&format!(
                    "    error: {}\n",
                    e.replace('\n', "\n           ")
                ));
            }
        }
        let failed = self
            .images
            .iter()
            .filter(|i| i.status == ImageOutcome::Failed)
            .count();
        out.push_str(&format!(
            "{}: {} image(s), {} failed{}\n",
            self.pipeline,
            self.images.len(),
            failed,
            if self.dry_run {
                " (dry run: nothing was built or published)"
            } else {
                ""
            }
        ));
        out
    }
}

/// Now, as RFC 3339 UTC text.
pub fn now_rfc3339() -> String {
    rfc3339(time::OffsetDateTime::now_utc())
}

/// `at` as RFC 3339 text.
pub fn rfc3339(at: time::OffsetDateTime) -> String {
    at.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| at.unix_timestamp().to_string())
}
