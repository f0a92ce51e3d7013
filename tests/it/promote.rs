//! `pipeline promote` and the `promote` stage between the two real local clouds of
//! `make cloud-up`: images are published into `local` (staging) by `pipeline run`, promoted
//! into `local-prod` (production), and both sides are read back — by the harness's
//! python-openstackclient where the claim is about what the clouds hold, by the crate's own
//! client where it is about the lifecycle.
//!
//! Isolation: each test publishes and promotes under its own stable name
//! `<unique prefix>-{profile}` (a copy of `pipelines/publish-all.yaml`, and `--name` for
//! promote), so the images of one test are exactly those whose name starts with its prefix in
//! either cloud. They are deleted from both clouds when the test passes and kept when it fails.
//! Every test fails, naming `make cloud-up`, when the clouds are not running.

use std::path::{Path, PathBuf};
use std::process::Command;

use hephaestus::glance::{Image, ImageStatus};
use serde_json::{json, Value};

use crate::cloud::{self, Cloud};
use crate::util::{self, Ran};

/// Staging: where `pipeline run` publishes.
const SOURCE: &str = "local";
/// Production: where promotion copies to.
const TARGET: &str = "local-prod";

/// One test's family of images in both clouds, and the means to publish and promote it.
struct Promotion {
    prefix: String,
    dir: tempfile::TempDir,
    pipeline: PathBuf,
    _cleanup: Cleanup,
}

impl Promotion {
    /// Checks the clouds are up, then writes `<tmp>/publish.yaml`: the shipped publish-all
    /// pipeline with upload name `<prefix>-{profile}` and without `boot-check` (the boot is
    /// proven by the publish tests; promotion copies whatever staging holds).
    fn new(test: &str) -> Promotion {
        cloud::require_up();
        Cloud::connect(TARGET);
        let prefix = cloud::unique_prefix(&format!("promote-{test}"));
        let dir = tempfile::tempdir().expect("tempdir");
        let shipped = std::fs::read_to_string(util::repo().join("pipelines/publish-all.yaml"))
            .expect("read pipelines/publish-all.yaml");
        let from = "name: \"hephaestus-{profile}\"";
        assert!(
            shipped.contains(from),
            "pipelines/publish-all.yaml no longer sets the upload name as {from}; adapt this test"
        );
        let text: String = shipped
            .replace(from, &format!("name: \"{prefix}-{{profile}}\""))
            .lines()
            .filter(|l| l.trim_start() != "- boot-check" && !l.contains("- boot-check "))
            .map(|l| format!("{l}\n"))
            .collect();
        assert!(
            !text.contains("- boot-check"),
            "could not remove boot-check from the pipeline copy:\n{text}"
        );
        let pipeline = dir.path().join("publish.yaml");
        std::fs::write(&pipeline, text).expect("write the pipeline copy");
        Promotion {
            _cleanup: Cleanup {
                prefix: prefix.clone(),
            },
            prefix,
            dir,
            pipeline,
        }
    }

    /// `<prefix>-{profile}`, as `--name` takes it.
    fn template(&self) -> String {
        format!("{}-{{profile}}", self.prefix)
    }

    /// The stable name of `profile`'s current image in either cloud.
    fn stable(&self, profile: &str) -> String {
        format!("{}-{profile}", self.prefix)
    }

    /// A copy of the fixture flake whose `generation` file says `content` (the same content
    /// in every run, so Nix builds it once).
    fn changed_flake(&self, content: &str) -> PathBuf {
        let flake = self.dir.path().join(format!("flake-{content}"));
        util::copy_tree(&util::repo().join("fixtures/flake"), &flake);
        std::fs::write(flake.join("generation"), format!("{content}\n")).expect("write generation");
        flake
    }

    /// Publishes `profiles` built from `flake` into `local`; every one must be published.
    fn publish(&self, flake: &Path, profiles: &[&str]) -> Value {
        let mut cmd = pipeline();
        cmd.arg("run")
            .arg(&self.pipeline)
            .args(["--cloud", SOURCE, "--json", "--flake"])
            .arg(flake);
        for p in profiles {
            cmd.args(["--profile", p]);
        }
        cmd.env("HEPHAESTUS_RUN_DIR", self.dir.path().join("run"));
        let ran = run(cmd);
        ran.expect_code(0);
        let report = report(&ran);
        for p in profiles {
            assert_eq!(text(entry(&report, p), "status"), "published", "{p}\n{ran}");
        }
        report
    }

    /// `pipeline promote --from local --to local-prod --name <prefix>-{profile} --json
    /// [--profile P]... EXTRA`.
    fn promote(&self, profiles: &[&str], extra: &[&str]) -> Ran {
        let mut cmd = pipeline();
        cmd.args([
            "promote", "--from", SOURCE, "--to", TARGET, "--json", "--name",
        ])
        .arg(self.template());
        for p in profiles {
            cmd.args(["--profile", p]);
        }
        cmd.args(extra);
        run(cmd)
    }

    /// Every image of this test in `local-prod`, hidden ones included.
    fn target_images(&self) -> Vec<Image> {
        Cloud::connect("local-prod-admin").images_named(&self.prefix)
    }

    /// The ids of [`Self::target_images`], sorted.
    fn target_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.target_images().into_iter().map(|i| i.id).collect();
        ids.sort();
        ids
    }
}

/// Deletes the test's images from both clouds when it passed; keeps them when it failed.
struct Cleanup {
    prefix: String,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "keeping the images named {}* in clouds {SOURCE} and {TARGET} for inspection",
                self.prefix
            );
            return;
        }
        for admin in ["local-admin", "local-prod-admin"] {
            Cloud::connect(admin).delete_named(&self.prefix);
        }
    }
}

/// The `pipeline` binary with `--root <repo>`, the harness's clouds.yaml and offline Nix.
fn pipeline() -> Command {
    let mut cmd = Command::new(assert_cmd::cargo::cargo_bin("pipeline"));
    cmd.arg("--root")
        .arg(util::repo())
        .env("OS_CLIENT_CONFIG_FILE", cloud::clouds_yaml())
        .env("NIX_CONFIG", crate::nix::offline_config())
        .env_remove("OS_CLOUD")
        .env_remove("OS_AUTH_URL")
        .env_remove("RUST_LOG");
    cmd
}

fn run(mut cmd: Command) -> Ran {
    let out = cmd.output().expect("spawn pipeline");
    let ran = Ran {
        what: format!("{cmd:?}"),
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    assert!(!ran.stderr.contains("panicked"), "the tool panicked\n{ran}");
    ran
}

/// The JSON report on stdout.
fn report(ran: &Ran) -> Value {
    serde_json::from_str(&ran.stdout)
        .unwrap_or_else(|e| panic!("stdout is not one JSON report ({e})\n{ran}"))
}

/// The report's entry of `profile`.
fn entry<'a>(report: &'a Value, profile: &str) -> &'a Value {
    report["images"]
        .as_array()
        .and_then(|images| images.iter().find(|i| i["profile"] == profile))
        .unwrap_or_else(|| panic!("the report has no image of {profile}: {report:#}"))
}

fn text<'a>(entry: &'a Value, key: &str) -> &'a str {
    entry[key]
        .as_str()
        .unwrap_or_else(|| panic!("report entry lacks a string `{key}`: {entry:#}"))
}

fn number(entry: &Value, key: &str) -> u64 {
    entry[key]
        .as_u64()
        .unwrap_or_else(|| panic!("report entry lacks a number `{key}`: {entry:#}"))
}

/// Image `id` of `cloud_name` as it is now. A fresh client each time: an idle client's pooled
/// connection is closed by Glance while a publish or promotion runs, and the next request on
/// it would fail.
fn image(cloud_name: &str, id: &str) -> Image {
    Cloud::connect(cloud_name).image(id)
}

fn has(image: &Image, tag: &str) -> bool {
    image.tags.iter().any(|t| t == tag)
}

/// `image` is the current image named `stable`: active, visible, tagged `current` and no
/// other lifecycle tag.
fn assert_current(image: &Image, stable: &str) {
    let facts = cloud::describe(image);
    assert_eq!(image.name.as_deref(), Some(stable), "{facts}");
    assert_eq!(image.status, ImageStatus::Active, "{facts}");
    assert!(!image.os_hidden, "the current image is visible: {facts}");
    assert!(has(image, "current"), "{facts}");
    for tag in ["candidate", "previous", "rolled-back"] {
        assert!(
            !has(image, tag),
            "the current image is not `{tag}`: {facts}"
        );
    }
}

/// `image` is the generation the current one replaced: `<stable>-<generation>`, hidden,
/// tagged `previous`, not `current`.
fn assert_previous(image: &Image, stable: &str) {
    let facts = cloud::describe(image);
    let generation = image
        .property("hephaestus_generation")
        .unwrap_or_else(|| panic!("no hephaestus_generation: {facts}"));
    assert_eq!(
        image.name.as_deref(),
        Some(format!("{stable}-{generation}").as_str()),
        "{facts}"
    );
    assert_eq!(
        image.status,
        ImageStatus::Active,
        "kept, not deleted: {facts}"
    );
    assert!(image.os_hidden, "the previous image is hidden: {facts}");
    assert!(has(image, "previous"), "{facts}");
    assert!(!has(image, "current"), "{facts}");
}

/// `openstack image show ID` in each `(cloud, id)`, in parallel (each call is a Python
/// start-up).
fn show_all(requests: &[(&str, &str)]) -> Vec<Value> {
    std::thread::scope(|scope| {
        let handles: Vec<_> = requests
            .iter()
            .map(|(cloud_name, id)| {
                scope.spawn(move || cloud::openstack(cloud_name, &["image", "show", id]))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("openstack image show"))
            .collect()
    })
}

/// A field of `openstack image show`, or null.
fn field(image: &Value, key: &str) -> Value {
    cloud::shown(image, key).cloned().unwrap_or(Value::Null)
}

/// `openstack --os-cloud CLOUD image set --tag TAG ID`, as CI would tag a tested image.
fn openstack_tag(cloud_name: &str, id: &str, tag: &str) {
    let program = cloud::venv().join("bin/openstack");
    let mut cmd = Command::new(&program);
    cmd.args(["--os-cloud", cloud_name, "image", "set", "--tag", tag, id])
        .env("OS_CLIENT_CONFIG_FILE", cloud::clouds_yaml())
        .env_remove("OS_CLOUD");
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}: {}", program.display(), cloud::START_IT));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({})\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn promote_copies_the_current_image_with_its_hashes_and_provenance_then_skips_it() {
    let _cloud = cloud::shared();
    let s = Promotion::new("copy");
    let profiles = ["lucy", "sunraku"];
    let published = s.publish(&util::repo().join("fixtures/flake"), &profiles);

    let ran = s.promote(&profiles, &[]);
    ran.expect_code(0);
    let first = report(&ran);
    assert_eq!(first["ok"], true, "{ran}");
    assert_eq!(first["cloud"], TARGET, "{ran}");
    for p in profiles {
        let e = entry(&first, p);
        assert_eq!(text(e, "status"), "published", "{p}\n{ran}");
        assert_eq!(text(e, "image_name"), s.stable(p), "{ran}");
        assert_ne!(
            text(e, "image_id"),
            text(entry(&published, p), "image_id"),
            "{p}: the target's image is a new image\n{ran}"
        );
        assert_eq!(
            number(e, "bytes_sent"),
            number(entry(&published, p), "size"),
            "{p}: every byte copied once\n{ran}"
        );
    }

    // Both clouds read back by an independent client.
    let pairs: Vec<(&str, &str)> = profiles
        .iter()
        .flat_map(|p| {
            [
                (SOURCE, text(entry(&published, p), "image_id")),
                (TARGET, text(entry(&first, p), "image_id")),
            ]
        })
        .collect();
    let shown = show_all(&pairs);
    for (i, p) in profiles.iter().enumerate() {
        let (source, target) = (&shown[2 * i], &shown[2 * i + 1]);
        let source_id = text(entry(&published, p), "image_id");
        for key in [
            "os_hash_algo",
            "os_hash_value",
            "checksum",
            "size",
            "hephaestus_store_path",
            "hephaestus_generation",
            "hephaestus_profile",
            "hw_firmware_type",
            "hw_machine_type",
            "min_disk",
            "min_ram",
        ] {
            assert_eq!(
                field(target, key),
                field(source, key),
                "{p}: `{key}` differs between {SOURCE} and {TARGET}\nsource {source:#}\ntarget {target:#}"
            );
        }
        assert!(field(target, "os_hash_value").is_string(), "{target:#}");
        assert_eq!(
            field(source, "os_hash_value"),
            entry(&published, p)["sha512"],
            "{p}: staging holds what was built"
        );
        let firmware = if *p == "sunraku" { "bios" } else { "uefi" };
        assert_eq!(field(target, "hw_firmware_type"), firmware, "{target:#}");
        assert_eq!(
            field(target, "hephaestus_promoted_from"),
            json!(format!("{SOURCE}:{source_id}")),
            "{target:#}"
        );
        assert!(
            field(source, "hephaestus_promoted_from").is_null(),
            "the source is not changed by its promotion: {source:#}"
        );
        assert_eq!(field(target, "name"), json!(s.stable(p)), "{target:#}");
        assert_eq!(field(target, "status"), "active", "{target:#}");
        assert_eq!(field(target, "os_hidden"), false, "{target:#}");
        let tags = field(target, "tags");
        assert!(
            tags.as_array()
                .is_some_and(|t| t.contains(&json!("current"))
                    && t.contains(&json!("hephaestus"))
                    && !t.contains(&json!("candidate"))),
            "{target:#}"
        );
    }
    for p in profiles {
        assert_current(
            &image(TARGET, text(entry(&first, p), "image_id")),
            &s.stable(p),
        );
    }
    for p in profiles {
        assert_current(
            &image(SOURCE, text(entry(&published, p), "image_id")),
            &s.stable(p),
        );
    }
    let mut promoted: Vec<String> = profiles
        .iter()
        .map(|p| text(entry(&first, p), "image_id").to_string())
        .collect();
    promoted.sort();
    assert_eq!(s.target_ids(), promoted, "exactly one image per profile");

    // Again: the target already holds this build.
    let ran = s.promote(&profiles, &[]);
    ran.expect_code(0);
    let second = report(&ran);
    for p in profiles {
        let e = entry(&second, p);
        assert_eq!(text(e, "status"), "skipped", "{p}\n{ran}");
        assert_eq!(number(e, "bytes_sent"), 0, "{p}\n{ran}");
        assert_eq!(
            text(e, "image_id"),
            text(entry(&first, p), "image_id"),
            "{p}: the skip names the image already current\n{ran}"
        );
    }
    assert_eq!(
        s.target_ids(),
        promoted,
        "a skipped promotion created images"
    );
}

#[test]
fn promote_require_tag_refuses_an_untested_image_until_ci_tags_it() {
    let _cloud = cloud::shared();
    let s = Promotion::new("tag");
    let published = s.publish(&util::repo().join("fixtures/flake"), &["lucy"]);
    let source_id = text(entry(&published, "lucy"), "image_id").to_string();

    let ran = s.promote(&["lucy"], &["--require-tag", "tested"]);
    ran.expect_code(1)
        .stderr_has("`tested`")
        .stderr_has(&source_id);
    let refused = report(&ran);
    assert_eq!(refused["ok"], false, "{ran}");
    let e = entry(&refused, "lucy");
    assert_eq!(text(e, "status"), "failed", "{ran}");
    assert!(text(e, "error").contains("`tested`"), "{ran}");
    assert_eq!(number(e, "bytes_sent"), 0, "{ran}");
    assert_eq!(
        s.target_ids(),
        Vec::<String>::new(),
        "a refused promotion created images in {TARGET}"
    );

    // CI's smoke test passed: it tags the staging image.
    openstack_tag(SOURCE, &source_id, "tested");
    let ran = s.promote(&["lucy"], &["--require-tag", "tested"]);
    ran.expect_code(0);
    let done = report(&ran);
    let e = entry(&done, "lucy");
    assert_eq!(text(e, "status"), "published", "{ran}");
    let target = image(TARGET, text(e, "image_id"));
    assert_current(&target, &s.stable("lucy"));
    assert!(
        has(&target, "tested"),
        "the source's tags are copied: {}",
        cloud::describe(&target)
    );
    assert_eq!(
        target.property("hephaestus_promoted_from"),
        Some(format!("{SOURCE}:{source_id}").as_str()),
        "{}",
        cloud::describe(&target)
    );
    assert_eq!(s.target_ids(), vec![target.id.clone()]);
}

#[test]
fn promote_follows_a_changed_publish_and_can_promote_an_older_generation() {
    let _cloud = cloud::shared();
    let s = Promotion::new("gens");
    let stable = s.stable("lucy");

    let first = s.publish(&util::repo().join("fixtures/flake"), &["lucy"]);
    let source1 = image(SOURCE, text(entry(&first, "lucy"), "image_id"));
    let generation1 = source1
        .property("hephaestus_generation")
        .unwrap_or_else(|| panic!("no generation: {}", cloud::describe(&source1)))
        .to_string();
    let ran = s.promote(&["lucy"], &[]);
    ran.expect_code(0);
    let target1 = text(entry(&report(&ran), "lucy"), "image_id").to_string();

    // A changed image is published into staging and promoted.
    let second = s.publish(&s.changed_flake("it-promote-changed"), &["lucy"]);
    let source2 = image(SOURCE, text(entry(&second, "lucy"), "image_id"));
    assert_ne!(
        source2.property("hephaestus_store_path"),
        source1.property("hephaestus_store_path")
    );
    let ran = s.promote(&["lucy"], &[]);
    ran.expect_code(0);
    let promoted = report(&ran);
    let e = entry(&promoted, "lucy");
    assert_eq!(text(e, "status"), "published", "{ran}");
    let target2 = text(e, "image_id").to_string();
    assert_ne!(target2, target1, "a changed image is a new image\n{ran}");

    let now = image(TARGET, &target2);
    assert_current(&now, &stable);
    assert_eq!(
        now.property("hephaestus_store_path"),
        source2.property("hephaestus_store_path")
    );
    assert_eq!(now.os_hash_value, source2.os_hash_value);
    assert_eq!(
        now.property("hephaestus_promoted_from"),
        Some(format!("{SOURCE}:{}", source2.id).as_str())
    );
    assert_previous(&image(TARGET, &target1), &stable);

    // Back to generation 1, by name: it becomes current in production again.
    let ran = s.promote(&["lucy"], &["--generation", &generation1]);
    ran.expect_code(0);
    let back = report(&ran);
    let e = entry(&back, "lucy");
    assert_eq!(text(e, "status"), "published", "{ran}");
    let current = image(TARGET, text(e, "image_id"));
    assert_current(&current, &stable);
    let facts = cloud::describe(&current);
    assert_eq!(
        current.property("hephaestus_generation"),
        Some(generation1.as_str()),
        "{facts}"
    );
    assert_eq!(
        current.property("hephaestus_store_path"),
        source1.property("hephaestus_store_path"),
        "{facts}"
    );
    assert_eq!(current.os_hash_value, source1.os_hash_value, "{facts}");
    assert_eq!(current.size, source1.size, "{facts}");
    assert_eq!(
        current.property("hephaestus_promoted_from"),
        Some(format!("{SOURCE}:{}", source1.id).as_str()),
        "{facts}"
    );
    assert_previous(&image(TARGET, &target2), &stable);
    // Staging is not touched by promotions: its current image is still generation 2.
    assert_current(&image(SOURCE, &source2.id), &stable);
}

#[test]
fn promote_of_a_profile_the_source_lacks_fails_clearly_and_creates_nothing() {
    let _cloud = cloud::shared();
    let s = Promotion::new("none");
    let ran = s.promote(&["makise"], &[]);
    ran.expect_code(1).stderr_has(&format!(
        "the source cloud {SOURCE} has no current image of `makise` named `{}`",
        s.stable("makise")
    ));
    let refused = report(&ran);
    let e = entry(&refused, "makise");
    assert_eq!(text(e, "status"), "failed", "{ran}");
    assert!(e["image_id"].is_null(), "{ran}");

    let ran = s.promote(&["makise"], &["--generation", "197001010000-nothere0"]);
    ran.expect_code(1)
        .stderr_has("has no generation 197001010000-nothere0 image of `makise`");
    assert_eq!(
        s.target_ids(),
        Vec::<String>::new(),
        "a failed promotion created images in {TARGET}"
    );

    // Promotion copies between two clouds, never within one.
    let mut cmd = pipeline();
    cmd.args([
        "promote",
        "--from",
        SOURCE,
        "--to",
        SOURCE,
        "--profile",
        "makise",
    ]);
    run(cmd).expect_code(2).stderr_has("--from and --to");
}

#[test]
fn promote_stage_of_a_pipeline_file_promotes_like_the_command() {
    let _cloud = cloud::shared();
    let s = Promotion::new("stage");
    let published = s.publish(&util::repo().join("fixtures/flake"), &["lucy"]);
    let source_id = text(entry(&published, "lucy"), "image_id").to_string();

    // The shipped promote pipeline, aimed at the local clouds, without the CI tag gate.
    let shipped = std::fs::read_to_string(util::repo().join("pipelines/promote.yaml"))
        .expect("read pipelines/promote.yaml");
    for needle in ["cloud: production", "from: staging", "require_tag: tested"] {
        assert!(
            shipped.contains(needle),
            "pipelines/promote.yaml no longer says `{needle}`; adapt this test"
        );
    }
    let copy: String = shipped
        .replace("cloud: production", &format!("cloud: {TARGET}"))
        .replace(
            "from: staging",
            &format!("from: {SOURCE}\n      name: \"{}\"", s.template()),
        )
        .lines()
        .filter(|l| !l.contains("require_tag:"))
        .map(|l| format!("{l}\n"))
        .collect();
    let file = s.dir.path().join("promote.yaml");
    std::fs::write(&file, copy).expect("write the promote pipeline copy");

    let mut cmd = pipeline();
    cmd.arg("run")
        .arg(&file)
        .args(["--profile", "lucy", "--json"])
        .env("HEPHAESTUS_RUN_DIR", s.dir.path().join("run"));
    let ran = run(cmd);
    ran.expect_code(0);
    let doc = report(&ran);
    assert_eq!(doc["pipeline"], "promote", "{ran}");
    assert_eq!(doc["cloud"], TARGET, "{ran}");
    let e = entry(&doc, "lucy");
    assert_eq!(text(e, "status"), "published", "{ran}");
    assert_eq!(text(e, "image_name"), s.stable("lucy"), "{ran}");
    let stages: Vec<&str> = e["stages"]
        .as_array()
        .map(|st| st.iter().filter_map(|x| x["stage"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(stages, ["promote"], "{ran}");

    let target = image(TARGET, text(e, "image_id"));
    assert_current(&target, &s.stable("lucy"));
    let source = image(SOURCE, &source_id);
    assert_eq!(target.os_hash_value, source.os_hash_value);
    assert_eq!(target.size, source.size);
    assert_eq!(
        target.property("hephaestus_promoted_from"),
        Some(format!("{SOURCE}:{source_id}").as_str())
    );
    assert_eq!(s.target_ids(), vec![target.id.clone()]);
}
