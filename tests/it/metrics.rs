//! `pipeline run --metrics FILE`: the file parses with the Prometheus client's own text parser
//! (prometheus_client from PyPI, in the harness venv, through scripts/check-metrics.py), every
//! family is a `hephaestus_` gauge with HELP and TYPE, and the values are the run report's.

use crate::cloud::{self, Sandbox};
use crate::nix::offline_config;
use crate::util::{self, pipeline, repo, report, run, run_std, PipelineCopy, Ran};
use serde_json::Value;
use std::path::Path;
use std::process::Command;

/// The families the parser read from `file`.
fn parsed(file: &Path) -> Vec<Value> {
    let mut cmd = Command::new(crate::schema::harness_python());
    cmd.arg(repo().join("scripts/check-metrics.py")).arg(file);
    let ran = run_std(&mut cmd);
    ran.expect_code(0);
    serde_json::from_str(&ran.stdout).unwrap_or_else(|e| panic!("{e}\n{ran}"))
}

/// The value of the sample `name` whose labels include every pair of `labels`.
fn value(families: &[Value], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    families
        .iter()
        .flat_map(|f| f["samples"].as_array().into_iter().flatten())
        .find(|s| {
            s["name"] == name
                && labels
                    .iter()
                    .all(|(k, v)| s["labels"][*k].as_str() == Some(*v))
        })
        .and_then(|s| s["value"].as_f64())
}

fn timestamp(text: &str) -> f64 {
    let at = time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|e| panic!("{text}: {e}"));
    at.unix_timestamp_nanos() as f64 / 1e9
}

/// Checks what every run's metrics must say against its report.
fn check_against_report(families: &[Value], doc: &Value, ran: &Ran) {
    assert!(!families.is_empty(), "no metric family\n{ran}");
    for family in families {
        let name = family["name"].as_str().unwrap_or_default();
        assert!(name.starts_with("hephaestus_"), "{family}");
        assert_eq!(family["type"], "gauge", "{family}");
        assert!(
            family["documentation"]
                .as_str()
                .is_some_and(|d| !d.is_empty()),
            "HELP of {name}"
        );
    }
    let pipeline = doc["pipeline"].as_str().expect("pipeline");
    let cloud = doc["cloud"].as_str().unwrap_or("");
    let run = [("pipeline", pipeline), ("cloud", cloud)];
    let started = timestamp(doc["started_at"].as_str().expect("started_at"));
    let finished = timestamp(doc["finished_at"].as_str().expect("finished_at"));
    let near = |a: f64, b: f64| (a - b).abs() < 1e-3;
    let duration = value(families, "hephaestus_run_duration_seconds", &run).expect("duration");
    assert!(near(duration, finished - started), "{duration}");
    let images = doc["images"].as_array().expect("images");
    let failed = images.iter().filter(|i| i["status"] == "failed").count();
    assert_eq!(
        value(families, "hephaestus_run_failures", &run),
        Some(failed as f64)
    );
    let end = value(families, "hephaestus_run_finished_timestamp_seconds", &run).expect("end");
    assert!(near(end, finished), "{end} vs {finished}");
    for image in images {
        let profile = image["profile"].as_str().expect("profile");
        let of = [
            ("pipeline", pipeline),
            ("cloud", cloud),
            ("profile", profile),
        ];
        let status = image["status"].as_str().expect("status");
        for word in [
            "published",
            "skipped",
            "unchanged",
            "held",
            "verified",
            "planned",
            "failed",
        ] {
            let mut labels = of.to_vec();
            labels.push(("status", word));
            assert_eq!(
                value(families, "hephaestus_image_status", &labels),
                Some(f64::from(u8::from(word == status))),
                "{profile} {word}"
            );
        }
        assert_eq!(
            value(families, "hephaestus_image_sent_bytes", &of),
            image["bytes_sent"].as_f64(),
            "{profile}"
        );
        for stage in image["stages"].as_array().expect("stages") {
            let mut labels = of.to_vec();
            labels.push(("stage", stage["stage"].as_str().expect("stage")));
            assert_eq!(
                value(families, "hephaestus_stage_duration_seconds", &labels),
                stage["seconds"].as_f64(),
                "{profile} {stage}"
            );
        }
        let last = value(
            families,
            "hephaestus_image_last_success_timestamp_seconds",
            &of,
        );
        if status != "failed" {
            assert!(
                last.is_some_and(|l| near(l, finished)),
                "{profile}: {last:?}"
            );
        }
        let age = value(families, "hephaestus_image_age_seconds", &of);
        match image["image_built_at"].as_str() {
            Some(built) => assert!(
                age.is_some_and(|a| near(a, finished - timestamp(built))),
                "{profile}: age {age:?}, built {built}"
            ),
            None => assert_eq!(age, None, "{profile}"),
        }
    }
}

#[test]
fn the_metrics_file_parses_with_prometheus_and_matches_the_report() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("hephaestus.prom");
    let mut cmd = pipeline(&repo());
    cmd.env("NIX_CONFIG", offline_config())
        .env("HEPHAESTUS_RUN_DIR", dir.path().join("run"))
        .args(["run", "verify-all", "--json", "--flake"])
        .arg(util::fixture_flake())
        .arg("--metrics")
        .arg(&file);
    let ran = run(&mut cmd);
    ran.expect_code(0)
        .stderr_has(&format!("metrics written to {}", file.display()));
    let families = parsed(&file);
    check_against_report(&families, &report(&ran), &ran);
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .expect("read_dir")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n != "run")
        .collect();
    assert_eq!(names, ["hephaestus.prom"], "no temporary file is left");
}

#[test]
fn a_dry_run_writes_no_metrics() {
    let mut cmd = pipeline(&repo());
    cmd.args(["run", "verify-all", "--dry-run", "--metrics", "x.prom"]);
    run(&mut cmd).expect_code(2).stderr_has("--dry-run");
}

#[test]
fn a_nightly_without_changes_reports_the_age_of_the_current_image() {
    let _cloud = cloud::shared();
    let copy = PipelineCopy {
        file: "nightly.yaml",
        upload_options: &[],
        boot_check: false,
        must_say: &["- skip-unchanged"],
    };
    let s = Sandbox::new("metrics-nightly", &copy, &["local"]);
    let file = s.dir.path().join("nightly.prom");
    let nightly = |profiles: &[&str]| {
        let mut cmd = util::cloud_pipeline(&cloud::clouds_yaml());
        cmd.arg("run")
            .arg(&s.pipeline)
            .args(["--cloud", "local", "--json", "--flake"])
            .arg(util::fixture_flake())
            .arg("--metrics")
            .arg(&file)
            .env("HEPHAESTUS_RUN_DIR", s.dir.path().join("run"));
        for p in profiles {
            cmd.args(["--profile", p]);
        }
        util::run_std(&mut cmd)
    };
    let first = nightly(&["lucy", "sunraku"]);
    first.expect_code(0);
    let published = report(&first);
    check_against_report(&parsed(&file), &published, &first);
    assert_eq!(util::entry(&published, "lucy")["status"], "published");
    assert!(util::number(util::entry(&published, "lucy"), "bytes_sent") > 0);

    let second = nightly(&["lucy", "sunraku"]);
    second.expect_code(0);
    let unchanged = report(&second);
    let families = parsed(&file);
    check_against_report(&families, &unchanged, &second);
    let lucy = util::entry(&unchanged, "lucy");
    assert_eq!(lucy["status"], "unchanged", "{lucy}");
    // The current image is the first night's: its build time is that run's start (to the
    // minute, as its generation names it), not this run's.
    let built = lucy["image_built_at"].as_str().expect("image_built_at");
    let first_start = timestamp(published["started_at"].as_str().expect("started_at"));
    assert!(
        timestamp(built) <= first_start && first_start - timestamp(built) < 60.0,
        "built {built}, first run started {first_start}"
    );
}

#[test]
fn images_stale_after_exits_5_for_an_old_image_and_for_its_own_replace_frequency() {
    let _cloud = cloud::shared();
    let copy = PipelineCopy {
        file: "publish-all.yaml",
        upload_options: &[],
        boot_check: false,
        must_say: &[],
    };
    let s = Sandbox::new("stale", &copy, &["local"]);
    let mut cmd = util::cloud_pipeline(&cloud::clouds_yaml());
    cmd.arg("run")
        .arg(&s.pipeline)
        .args([
            "--cloud",
            "local",
            "--json",
            "--profile",
            "quinn",
            "--flake",
        ])
        .arg(util::fixture_flake())
        .env("HEPHAESTUS_RUN_DIR", s.dir.path().join("run"));
    let ran = run_std(&mut cmd);
    ran.expect_code(0);
    let id = util::text(util::entry(&report(&ran), "quinn"), "image_id").to_string();
    let images = |limit: &str| {
        let mut cmd = util::cloud_pipeline(&cloud::clouds_yaml());
        cmd.args([
            "images",
            "--cloud",
            "local",
            "--profile",
            "quinn",
            "--json",
            "--stale-after",
            limit,
        ]);
        run_std(&mut cmd)
    };
    let stale_ids = |ran: &Ran| -> Vec<String> {
        report(ran)["stale"]
            .as_array()
            .expect("stale list")
            .iter()
            .filter_map(|s| s["id"].as_str().map(str::to_string))
            .collect()
    };
    let fresh = images("7d");
    assert!(!stale_ids(&fresh).contains(&id), "{fresh}");

    // Ten days old, as if the nightly had stopped publishing it.
    let built = time::OffsetDateTime::now_utc() - time::Duration::days(10);
    let date = format!(
        "{:04}-{:02}-{:02} {:02}:{:02}",
        built.year(),
        u8::from(built.month()),
        built.day(),
        built.hour(),
        built.minute()
    );
    let local = cloud::Cloud::connect("local");
    let target = id.clone();
    local.call(|g| async move {
        g.update_image(
            &target,
            &[hephaestus::glance::PatchOp::replace(
                "image_build_date",
                date.as_str(),
            )],
        )
        .await
        .expect("backdate the image")
    });
    let old = images("7d");
    old.expect_code(5)
        .stderr_has("more than --stale-after 7d0h");
    assert!(stale_ids(&old).contains(&id), "{old}");
    images("30d").expect_code(0);

    // Its own promise: weekly, so ten days is stale even under a 30-day limit.
    let target = id.clone();
    local.call(|g| async move {
        g.update_image(
            &target,
            &[hephaestus::glance::PatchOp::replace(
                "replace_frequency",
                "weekly",
            )],
        )
        .await
        .expect("set replace_frequency")
    });
    let promised = images("30d");
    promised
        .expect_code(5)
        .stderr_has("replace_frequency `weekly` allows (7d0h)");
    assert!(stale_ids(&promised).contains(&id), "{promised}");
}
