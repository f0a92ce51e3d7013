//! `pipeline run --metrics FILE`: the run's outcome in node_exporter's textfile format, for
//! monitoring to tell whether the nightly ran, what it did, and how old each image is.
//!
//! The file is written beside its final name and renamed over it, so the textfile collector
//! never reads half a file. Its temporary name does not end in `.prom`, which the collector
//! ignores. A failed image keeps the last-success time the previous file gave it: the file is
//! replaced by every run, and "when did this image last succeed" must survive a failing night.
//! Only names, statuses and numbers are written; nothing from a cloud's credentials is ever
//! known here.

use super::report::{ImageOutcome, Report};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use time::OffsetDateTime;

/// Every image status, in the report's spelling.
const STATUSES: [(ImageOutcome, &str); 7] = [
    (ImageOutcome::Published, "published"),
    (ImageOutcome::Skipped, "skipped"),
    (ImageOutcome::Unchanged, "unchanged"),
    (ImageOutcome::Held, "held"),
    (ImageOutcome::Verified, "verified"),
    (ImageOutcome::Planned, "planned"),
    (ImageOutcome::Failed, "failed"),
];

const LAST_SUCCESS: &str = "hephaestus_image_last_success_timestamp_seconds";

/// Why the metrics file was not written.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file has no directory part that can hold the temporary file.
    #[error("{} names no file", .0.display())]
    NoFileName(PathBuf),
    /// Writing the temporary file or renaming it failed.
    #[error("cannot write the metrics file {}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

fn parse(text: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).ok()
}

fn seconds(at: OffsetDateTime) -> f64 {
    at.unix_timestamp_nanos() as f64 / 1e9
}

/// A label value in the exposition format's escaping.
fn escape(value: &str) -> String {
    value
        .replace('\\', r"\\")
        .replace('"', "\\\"")
        .replace('\n', r"\n")
}

fn labels(pairs: &[(&str, &str)]) -> String {
    let inner: Vec<String> = pairs
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
        .collect();
    format!("{{{}}}", inner.join(","))
}

/// The value `previous` (an earlier file) gives `name` with exactly `labels`.
fn previous_value(previous: &str, name: &str, labels: &str) -> Option<f64> {
    let head = format!("{name}{labels} ");
    previous
        .lines()
        .find_map(|line| line.strip_prefix(&head))
        .and_then(|v| v.trim().parse().ok())
}

/// The metrics of `report`; `previous` is the file it replaces (empty when none).
pub fn render(report: &Report, previous: &str) -> String {
    // A run into several clouds is one run: its series carry every cloud, in order.
    let clouds = report.clouds.join(",");
    let cloud = if clouds.is_empty() {
        report.cloud.as_deref().unwrap_or("")
    } else {
        clouds.as_str()
    };
    let started = parse(&report.started_at);
    let finished = parse(&report.finished_at);
    let mut out = String::new();
    let family = |out: &mut String, name: &str, kind: &str, help: &str| {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
    };

    family(
        &mut out,
        "hephaestus_image_status",
        "gauge",
        "1 for the image's status in the last run (published, skipped, unchanged, held, verified, planned, failed), 0 for the others.",
    );
    for image in &report.images {
        for (status, word) in STATUSES {
            let l = labels(&[
                ("pipeline", &report.pipeline),
                ("cloud", cloud),
                ("profile", &image.profile),
                ("status", word),
            ]);
            let _ = writeln!(
                out,
                "hephaestus_image_status{l} {}",
                u8::from(image.status == status)
            );
        }
    }

    family(
        &mut out,
        LAST_SUCCESS,
        "gauge",
        "Unix time of the end of the last run in which the image did not fail (kept from the previous file when it failed).",
    );
    for image in &report.images {
        let l = labels(&[
            ("pipeline", &report.pipeline),
            ("cloud", cloud),
            ("profile", &image.profile),
        ]);
        let value = if image.status == ImageOutcome::Failed {
            previous_value(previous, LAST_SUCCESS, &l)
        } else {
            finished.map(seconds)
        };
        if let Some(v) = value {
            let _ = writeln!(out, "{LAST_SUCCESS}{l} {v}");
        }
    }

    family(
        &mut out,
        "hephaestus_image_age_seconds",
        "gauge",
        "Seconds from the build of the image current in the cloud to the end of the run.",
    );
    for image in &report.images {
        let built = image.image_built_at.as_deref().and_then(parse);
        if let (Some(built), Some(finished)) = (built, finished) {
            let l = labels(&[
                ("pipeline", &report.pipeline),
                ("cloud", cloud),
                ("profile", &image.profile),
            ]);
            let age = seconds(finished) - seconds(built);
            let _ = writeln!(out, "hephaestus_image_age_seconds{l} {age}");
        }
    }

    family(
        &mut out,
        "hephaestus_image_sent_bytes",
        "gauge",
        "Bytes of image data sent to the cloud in the last run, failed attempts included.",
    );
    for image in &report.images {
        let l = labels(&[
            ("pipeline", &report.pipeline),
            ("cloud", cloud),
            ("profile", &image.profile),
        ]);
        let _ = writeln!(out, "hephaestus_image_sent_bytes{l} {}", image.bytes_sent);
    }

    family(
        &mut out,
        "hephaestus_stage_duration_seconds",
        "gauge",
        "Wall time of each stage of each image in the last run.",
    );
    for image in &report.images {
        for stage in &image.stages {
            let l = labels(&[
                ("pipeline", &report.pipeline),
                ("cloud", cloud),
                ("profile", &image.profile),
                ("stage", &stage.stage),
            ]);
            let _ = writeln!(
                out,
                "hephaestus_stage_duration_seconds{l} {}",
                stage.seconds
            );
        }
    }

    let run = labels(&[("pipeline", &report.pipeline), ("cloud", cloud)]);
    family(
        &mut out,
        "hephaestus_run_duration_seconds",
        "gauge",
        "Wall time of the last run.",
    );
    if let (Some(s), Some(f)) = (started, finished) {
        let _ = writeln!(
            out,
            "hephaestus_run_duration_seconds{run} {}",
            seconds(f) - seconds(s)
        );
    }
    family(
        &mut out,
        "hephaestus_run_failures",
        "gauge",
        "Images that failed in the last run.",
    );
    let failed = report
        .images
        .iter()
        .filter(|i| i.status == ImageOutcome::Failed)
        .count();
    let _ = writeln!(out, "hephaestus_run_failures{run} {failed}");
    family(
        &mut out,
        "hephaestus_run_finished_timestamp_seconds",
        "gauge",
        "Unix time the last run ended: alert when it is older than the schedule.",
    );
    if let Some(f) = finished {
        let _ = writeln!(
            out,
            "hephaestus_run_finished_timestamp_seconds{run} {}",
            seconds(f)
        );
    }
    out
}

/// Writes the metrics of `report` to `path`, atomically.
pub fn write(report: &Report, path: &Path) -> Result<(), Error> {
    let name = path
        .file_name()
        .ok_or_else(|| Error::NoFileName(path.to_path_buf()))?;
    let previous = crate::bounded::read(path, 16 << 20)
        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
        .unwrap_or_default();
    let text = render(report, &previous);
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".{}.tmp", std::process::id()));
    let tmp = path.with_file_name(tmp_name);
    let fail = |source| Error::Write {
        path: path.to_path_buf(),
        source,
    };
    std::fs::write(&tmp, text).map_err(fail)?;
    // Readable by the collector's own user whatever the writer's umask (the nightly unit's is
    // 0077): the file holds names and numbers, never a secret.
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o644)).map_err(fail)?;
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        fail(e)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::firmware::Boot;
    use crate::pipeline::report::{ImageReport, StageReport, StageStatus};

    fn image(profile: &str, status: ImageOutcome) -> ImageReport {
        ImageReport {
            profile: profile.into(),
            status,
            firmware: Boot::Uefi,
            image_id: None,
            image_name: None,
            bytes_sent: 42,
            image_built_at: Some("2026-12-01T00:00:00Z".into()),
            boot_seconds: None,
            boot_metadata: None,
            boot_hostname: None,
            cleanup_failed: false,
            store_path: None,
            size: None,
            sha256: None,
            sha512: None,
            md5: None,
            properties: Default::default(),
            tags: vec![],
            stages: vec![StageReport {
                stage: "build".into(),
                status: StageStatus::Ok,
                seconds: 1.5,
                note: None,
            }],
            clouds: Vec::new(),
            held: None,
            error: None,
        }
    }

    fn report(images: Vec<ImageReport>) -> Report {
        Report {
            pipeline: "nightly".into(),
            cloud: Some("sta\"ging".into()),
            clouds: vec!["sta\"ging".into()],
            ok: true,
            dry_run: false,
            started_at: "2026-12-02T00:00:00Z".into(),
            finished_at: "2026-12-02T00:01:00Z".into(),
            images,
        }
    }

    #[test]
    fn a_failed_image_keeps_its_last_success_and_labels_are_escaped() {
        let ok = render(&report(vec![image("lucy", ImageOutcome::Published)]), "");
        let line = "hephaestus_image_last_success_timestamp_seconds{pipeline=\"nightly\",cloud=\"sta\\\"ging\",profile=\"lucy\"} 1796169660";
        assert!(ok.contains(line), "{ok}");
        assert!(ok.contains("hephaestus_image_age_seconds{pipeline=\"nightly\",cloud=\"sta\\\"ging\",profile=\"lucy\"} 86460"), "{ok}");
        let failed = render(&report(vec![image("lucy", ImageOutcome::Failed)]), &ok);
        assert!(failed.contains(line), "{failed}");
        assert!(failed
            .contains("hephaestus_run_failures{pipeline=\"nightly\",cloud=\"sta\\\"ging\"} 1"));
        let first_failure = render(&report(vec![image("lucy", ImageOutcome::Failed)]), "");
        assert!(
            !first_failure.contains(&format!("{LAST_SUCCESS}{{")),
            "{first_failure}"
        );
    }

    #[test]
    fn the_file_is_replaced_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hephaestus.prom");
        std::fs::write(&path, "old").unwrap();
        write(&report(vec![image("lucy", ImageOutcome::Verified)]), &path).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("# HELP hephaestus_image_status"), "{text}");
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["hephaestus.prom"], "no temporary file is left");
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(
            mode & 0o777,
            0o644,
            "the textfile collector's user may read it"
        );
    }
}
