//! `pipeline tag` against the real local clouds (`make cloud-up`): the `tested` tag a CI sets
//! on staging's current images, which `promote --require-tag tested` waits for; clearing it;
//! one named generation; the lifecycle's reserved tags refused; the cloud lock; and a missing
//! target stopping the command before anything is tagged.
//!
//! Isolation: each test publishes under its own stable name `<unique prefix>-{profile}` and
//! passes `--name` to every command; its images are deleted when it passes.

use std::fs::File;
use std::path::Path;
use std::process::Command;

use hephaestus::glance::Image;
use serde_json::Value;

use crate::cloud::{self, has, Cloud, Sandbox};
use crate::util::{self, entry, report, text, PipelineCopy, Ran};

const STAGING: &str = "local";
const PRODUCTION: &str = "local-prod";

struct Tagging {
    sandbox: Sandbox,
}

cloud::sandbox_deref!(Tagging);

impl Tagging {
    fn new(test: &str) -> Tagging {
        let copy = PipelineCopy {
            file: "publish-all.yaml",
            upload_options: &["keep: 100"],
            boot_check: false,
            must_say: &[],
        };
        Tagging {
            sandbox: Sandbox::new(&format!("tag-{test}"), &copy, &[STAGING, PRODUCTION]),
        }
    }

    fn template(&self) -> String {
        format!("{}-{{profile}}", self.prefix)
    }

    /// Publishes `profiles` from `flake` into staging; returns each one's image id.
    fn publish(&self, flake: &Path, profiles: &[&str]) -> Vec<String> {
        let mut cmd = pipeline();
        cmd.arg("run")
            .arg(&self.pipeline)
            .args(["--cloud", STAGING, "--json", "--flake"])
            .arg(flake)
            .env("HEPHAESTUS_RUN_DIR", self.dir.path().join("run"));
        for p in profiles {
            cmd.args(["--profile", p]);
        }
        let ran = util::run_std(&mut cmd);
        ran.expect_code(0);
        let doc = report(&ran);
        profiles
            .iter()
            .map(|p| {
                let e = entry(&doc, p);
                assert_eq!(text(e, "status"), "published", "{p}\n{ran}");
                text(e, "image_id").to_string()
            })
            .collect()
    }

    /// `pipeline tag --cloud local --name <prefix>-{profile} --json ARGS`, with the test's
    /// own run directory (where its lock lives).
    fn tag(&self, args: &[&str]) -> Ran {
        let mut cmd = pipeline();
        cmd.args(["tag", "--cloud", STAGING, "--json", "--name"])
            .arg(self.template())
            .args(args)
            .env("HEPHAESTUS_RUN_DIR", self.dir.path().join("run"));
        util::run_std(&mut cmd)
    }

    fn image(&self, id: &str) -> Image {
        Cloud::connect(STAGING).image(id)
    }
}

fn pipeline() -> Command {
    util::cloud_pipeline(&cloud::clouds_yaml())
}

/// The report entries of `pipeline tag --json`, by profile.
fn tagged<'a>(doc: &'a Value, profile: &str) -> &'a Value {
    doc["images"]
        .as_array()
        .and_then(|l| l.iter().find(|i| i["profile"] == profile))
        .unwrap_or_else(|| panic!("no entry for {profile}: {doc:#}"))
}

#[test]
fn tag_sets_and_clears_tested_on_current_images_and_promote_waits_for_it() {
    let _cloud = cloud::shared();
    let s = Tagging::new("set");
    let ids = s.publish(&util::fixture_flake(), &["lucy", "sunraku"]);
    let (lucy, sunraku) = (&ids[0], &ids[1]);

    let ran = s.tag(&["--profile", "lucy", "tested"]);
    ran.expect_code(0).stderr_has("lucy: tagged tested on");
    let doc = report(&ran);
    assert_eq!(doc["cloud"], STAGING, "{ran}");
    assert_eq!(doc["action"], "set", "{ran}");
    assert_eq!(doc["tags"], serde_json::json!(["tested"]), "{ran}");
    let e = tagged(&doc, "lucy");
    assert_eq!(e["id"], lucy.as_str(), "{ran}");
    assert_eq!(e["role"], "current", "{ran}");
    assert_eq!(e["changed"], true, "{ran}");
    assert_eq!(doc["images"].as_array().map(Vec::len), Some(1), "{ran}");
    let image = s.image(lucy);
    assert!(has(&image, "tested"), "{}", cloud::describe(&image));
    for kept in ["current", "hephaestus", "profile:lucy"] {
        assert!(
            has(&image, kept),
            "{kept} was lost: {}",
            cloud::describe(&image)
        );
    }
    assert!(!has(&s.image(sunraku), "tested"), "only lucy was asked for");

    // The gate: promotion with --require-tag copies lucy and refuses sunraku.
    let mut promote = pipeline();
    promote
        .args(["promote", "--from", STAGING, "--to", PRODUCTION, "--json"])
        .args(["--require-tag", "tested", "--name"])
        .arg(s.template())
        .args(["--profile", "lucy", "--profile", "sunraku"])
        .env("HEPHAESTUS_RUN_DIR", s.dir.path().join("run"));
    let ran = util::run_std(&mut promote);
    ran.expect_code(1);
    let doc = report(&ran);
    assert_eq!(text(entry(&doc, "lucy"), "status"), "published", "{ran}");
    assert_eq!(text(entry(&doc, "sunraku"), "status"), "failed", "{ran}");
    ran.stderr_has("tested");

    // Again: nothing to change, said so.
    let ran = s.tag(&["--profile", "lucy", "tested"]);
    ran.expect_code(0).stderr_has("already tagged");
    assert_eq!(tagged(&report(&ran), "lucy")["changed"], false, "{ran}");

    // Every profile the cloud holds under the name, when none is given.
    let ran = s.tag(&["tested", "smoke"]);
    ran.expect_code(0);
    let doc = report(&ran);
    assert_eq!(tagged(&doc, "sunraku")["changed"], true, "{ran}");
    assert_eq!(tagged(&doc, "lucy")["changed"], true, "smoke is new\n{ran}");
    for id in [lucy, sunraku] {
        let image = s.image(id);
        assert!(
            has(&image, "tested") && has(&image, "smoke"),
            "{}",
            cloud::describe(&image)
        );
    }

    // --remove clears only what it names.
    let ran = s.tag(&["--remove", "tested"]);
    ran.expect_code(0).stderr_has("untagged tested");
    assert_eq!(report(&ran)["action"], "remove", "{ran}");
    for id in [lucy, sunraku] {
        let image = s.image(id);
        assert!(!has(&image, "tested"), "{}", cloud::describe(&image));
        assert!(
            has(&image, "smoke") && has(&image, "current"),
            "{}",
            cloud::describe(&image)
        );
    }
}

#[test]
fn tag_a_named_generation_and_refuse_a_missing_one_before_changing_anything() {
    let _cloud = cloud::shared();
    let s = Tagging::new("generation");
    let first = s
        .publish(&s.changed_flake("lifecycle-1"), &["lucy"])
        .remove(0);
    let second = s
        .publish(&s.changed_flake("lifecycle-2"), &["lucy"])
        .remove(0);
    let g1 = cloud::generation(&s.image(&first));

    let ran = s.tag(&["--profile", "lucy", "--generation", &g1, "tested"]);
    ran.expect_code(0);
    let e = tagged(&report(&ran), "lucy").clone();
    assert_eq!(e["id"], first.as_str(), "{ran}");
    assert_eq!(e["generation"], g1.as_str(), "{ran}");
    assert_eq!(e["role"], "previous", "{ran}");
    assert!(has(&s.image(&first), "tested"));
    assert!(
        !has(&s.image(&second), "tested"),
        "the current image is not the one asked"
    );

    let ran = s.tag(&[
        "--profile",
        "lucy",
        "--generation",
        "197001010000-nothere",
        "x",
    ]);
    ran.expect_code(1)
        .stderr_has("has no generation 197001010000-nothere")
        .stderr_has(&g1)
        .stderr_has("nothing was tagged");

    // --generation names one image: one profile with it.
    let ran = s.tag(&["--generation", &g1, "tested"]);
    ran.expect_code(2).stderr_has("exactly one --profile");

    // quinn has no image under this name: lucy, asked for with it, is not tagged either.
    let ran = s.tag(&["--profile", "lucy", "--profile", "quinn", "batch"]);
    ran.expect_code(1)
        .stderr_has("quinn")
        .stderr_has("nothing was tagged");
    assert!(ran.stdout.trim().is_empty(), "{ran}");
    assert!(
        !has(&s.image(&second), "batch"),
        "lucy was tagged after all"
    );
}

#[test]
fn tag_refuses_every_reserved_tag_with_exit_2_before_asking_the_cloud() {
    for tag in [
        "candidate",
        "current",
        "previous",
        "rolled-back",
        "keep",
        "hephaestus",
        "profile:lucy",
    ] {
        for remove in [false, true] {
            // A cloud that does not exist: the refusal must come before any connection.
            let mut cmd = util::cloud_pipeline(Path::new("/nonexistent/clouds.yaml"));
            cmd.args(["tag", "--cloud", "nowhere", "--profile", "lucy"]);
            if remove {
                cmd.arg("--remove");
            }
            cmd.args(["tested", tag]);
            let ran = util::run_std(&mut cmd);
            ran.expect_code(2)
                .stderr_has(&format!("tag `{tag}` is reserved"))
                .stderr_has("the image lifecycle owns the tags");
            assert!(!ran.stderr.contains("nowhere"), "{ran}");
        }
    }
}

#[test]
fn tag_waits_for_the_cloud_lock_and_exits_4_past_lock_timeout() {
    let _cloud = cloud::shared();
    let s = Tagging::new("lock");
    let id = s.publish(&util::fixture_flake(), &["lucy"]).remove(0);
    let locks = s.dir.path().join("run/locks");
    std::fs::create_dir_all(&locks).expect("mkdir locks");
    let held = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(locks.join(format!("{STAGING}.lock")))
        .expect("open the lock file");
    held.try_lock().expect("the lock is free before the test");

    let ran = s.tag(&["--profile", "lucy", "--lock-timeout", "0", "tested"]);
    ran.expect_code(4)
        .stderr_has("another pipeline process is changing images in cloud `local`");
    assert!(!has(&s.image(&id), "tested"), "tagged without the lock");

    held.unlock().expect("unlock");
    s.tag(&["--profile", "lucy", "--lock-timeout", "0", "tested"])
        .expect_code(0);
    assert!(has(&s.image(&id), "tested"));
}
