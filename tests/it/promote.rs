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

use std::path::Path;
use std::process::Command;

use hephaestus::glance::{Image, NewImage, Visibility};
use serde_json::{json, Value};

use crate::cloud::{self, assert_current, field, has, image, show_all, Cloud, Sandbox};
use crate::proxy::{Fault, Proxy, Request};
use crate::util::{self, entry, fixture_flake, number, report, text, PipelineCopy, Ran};

/// Staging: where `pipeline run` publishes.
const SOURCE: &str = "local";
/// Production: where promotion copies to.
const TARGET: &str = "local-prod";

/// One test's family of images in both clouds, and the means to publish and promote it.
struct Promotion {
    sandbox: Sandbox,
}

cloud::sandbox_deref!(Promotion);

impl Promotion {
    /// Checks the clouds are up, then writes `<tmp>/publish-all.yaml`: the shipped
    /// publish-all pipeline with upload name `<prefix>-{profile}` and without `boot-check`
    /// (the boot is proven by the publish tests; promotion copies whatever staging holds).
    fn new(test: &str) -> Promotion {
        Self::with_upload_options(test, &[])
    }

    /// [`Self::new`], with `options` added to the upload stage.
    fn with_upload_options(test: &str, options: &[&str]) -> Promotion {
        cloud::require_up();
        Cloud::connect(TARGET);
        let copy = PipelineCopy {
            file: "publish-all.yaml",
            upload_options: options,
            boot_check: false,
            must_say: &[],
        };
        Promotion {
            sandbox: Sandbox::new(&format!("promote-{test}"), &copy, &[SOURCE, TARGET]),
        }
    }

    /// `<prefix>-{profile}`, as `--name` takes it.
    fn template(&self) -> String {
        format!("{}-{{profile}}", self.prefix)
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
        let ran = util::run_std(&mut cmd);
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
        util::run_std(&mut cmd)
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

/// The `pipeline` binary with `--root <repo>`, the harness's clouds.yaml and offline Nix.
fn pipeline() -> Command {
    util::cloud_pipeline(&cloud::clouds_yaml())
}

/// `image` is the generation the current one replaced: `<stable>-<generation>`, hidden,
/// tagged `previous`, not `current`.
fn assert_previous(image: &Image, stable: &str) {
    cloud::assert_kept(image, stable, Some("previous"));
}

/// `openstack --os-cloud CLOUD image set --tag TAG ID`, as CI would tag a tested image.
fn openstack_tag(cloud_name: &str, id: &str, tag: &str) {
    cloud::openstack_run(cloud_name, &["image", "set", "--tag", tag, id]);
}

#[test]
fn promote_copies_the_current_image_with_its_hashes_and_provenance_then_skips_it() {
    let _cloud = cloud::shared();
    let s = Promotion::new("copy");
    let profiles = ["lucy", "sunraku"];
    let published = s.publish(&fixture_flake(), &profiles);

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
    let published = s.publish(&fixture_flake(), &["lucy"]);
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

    let first = s.publish(&fixture_flake(), &["lucy"]);
    let source1 = image(SOURCE, text(entry(&first, "lucy"), "image_id"));
    let generation1 = cloud::generation(&source1);
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
    util::run_std(&mut cmd)
        .expect_code(2)
        .stderr_has("--from and --to");
}

#[test]
fn promote_stage_of_a_pipeline_file_promotes_like_the_command() {
    let _cloud = cloud::shared();
    let s = Promotion::new("stage");
    let published = s.publish(&fixture_flake(), &["lucy"]);
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
    let ran = util::run_std(&mut cmd);
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

#[test]
fn a_production_rollback_holds_the_rolled_back_build_against_promotion() {
    let _cloud = cloud::shared();
    let s = Promotion::new("held");
    let stable = s.stable("lucy");
    s.publish(&fixture_flake(), &["lucy"]);
    s.promote(&["lucy"], &[]).expect_code(0);
    let target1 = s.target_ids();
    s.publish(&s.changed_flake("it-promote-changed"), &["lucy"]);
    let ran = s.promote(&["lucy"], &[]);
    ran.expect_code(0);
    let target2 = text(entry(&report(&ran), "lucy"), "image_id").to_string();

    // Production rolls back; staging still has the rolled-back build as its current image.
    let ran = util::run_std(pipeline().args([
        "rollback",
        "lucy",
        "--cloud",
        TARGET,
        "--name",
        &s.template(),
    ]));
    ran.expect_code(0);
    assert_current(&image(TARGET, &target1[0]), &stable);
    let before = s.target_ids();
    let ran = s.promote(&["lucy"], &[]);
    ran.expect_code(0);
    let held = report(&ran);
    let e = entry(&held, "lucy");
    assert_eq!(text(e, "status"), "held", "{ran}");
    assert_eq!(number(e, "bytes_sent"), 0, "{ran}");
    assert!(text(e, "held").contains(&target2), "{ran}");
    assert_eq!(
        s.target_ids(),
        before,
        "a held promotion changed production"
    );
    assert_current(&image(TARGET, &target1[0]), &stable);

    // A new build in staging is promoted as usual.
    s.publish(&s.changed_flake("it-promote-held-fix"), &["lucy"]);
    let ran = s.promote(&["lucy"], &[]);
    ran.expect_code(0);
    let fixed = report(&ran);
    let e = entry(&fixed, "lucy");
    assert_eq!(text(e, "status"), "published", "{ran}");
    assert_current(&image(TARGET, text(e, "image_id")), &stable);
    util::run_std(pipeline().args([
        "check",
        "--cloud",
        TARGET,
        "--profile",
        "lucy",
        "--name",
        &s.template(),
    ]))
    .expect_code(0)
    .stderr_has("every image family is sound");
}

/// One promotion of lucy through a proxy with `fault` in front of cloud `faulty`'s Glance:
/// it must fail with exit 1 and leave production as it was, its family sound.
fn promote_under_fault(test: &str, faulty: &str, fault: Fault) {
    let s = Promotion::new(test);
    let stable = s.stable("lucy");
    s.publish(&fixture_flake(), &["lucy"]);
    s.promote(&["lucy"], &[]).expect_code(0);
    let before = s.target_ids();
    s.publish(&s.changed_flake("it-promote-changed"), &["lucy"]);

    let target = Cloud::connect(faulty).glance_addr();
    let proxy = Proxy::start(target, vec![fault]);
    let clouds = cloud::clouds_yaml_copy(s.dir.path(), |c| {
        c[faulty]["image_endpoint_override"] = json!(proxy.url());
    });
    let mut cmd = util::cloud_pipeline(&clouds);
    cmd.args([
        "promote", "--from", SOURCE, "--to", TARGET, "--json", "--name",
    ])
    .arg(s.template())
    .args(["--profile", "lucy"]);
    let ran = util::run_std(&mut cmd);
    ran.expect_code(1);
    let e = report(&ran);
    assert_eq!(text(entry(&e, "lucy"), "status"), "failed", "{ran}");
    let stats = proxy.stats();
    assert!(
        stats.dropped + stats.responses_dropped + stats.flipped >= 1,
        "the fault acted: {stats}"
    );
    assert_eq!(
        s.target_ids(),
        before,
        "production holds nothing new\n{ran}"
    );
    assert_current(&image(TARGET, &before[0]), &stable);
    util::run_std(pipeline().args([
        "check",
        "--cloud",
        TARGET,
        "--profile",
        "lucy",
        "--name",
        &s.template(),
    ]))
    .expect_code(0);
}

#[test]
fn fault_proxy_promote_whose_source_stream_is_cut_leaves_nothing_in_production() {
    let _cloud = cloud::shared();
    promote_under_fault(
        "cut-source",
        SOURCE,
        Fault::DropResponseAfter {
            request: Request::new("GET", "/v2/images/*/file"),
            after: 300_000,
            times: usize::MAX,
        },
    );
}

#[test]
fn fault_proxy_promote_whose_target_stream_is_cut_leaves_nothing_in_production() {
    let _cloud = cloud::shared();
    promote_under_fault(
        "cut-target",
        TARGET,
        Fault::DropAfter {
            request: Request::upload(),
            after: 300_000,
            times: usize::MAX,
        },
    );
}

#[test]
fn fault_proxy_promote_with_a_flipped_byte_leaves_nothing_in_production() {
    let _cloud = cloud::shared();
    promote_under_fault(
        "flip",
        TARGET,
        Fault::FlipByte {
            request: Request::upload(),
            offset: 700_000,
            times: usize::MAX,
        },
    );
}

#[test]
fn promote_generation_never_picks_a_candidate_and_refuses_an_ambiguous_match() {
    let _cloud = cloud::shared();
    let s = Promotion::new("gen-rules");
    let first = s.publish(&fixture_flake(), &["lucy"]);
    let source1 = image(SOURCE, text(entry(&first, "lucy"), "image_id"));
    let generation1 = cloud::generation(&source1);
    let staging = Cloud::connect(SOURCE);
    let record = |name: String, generation: &str, tags: &[&str]| NewImage {
        name,
        disk_format: "qcow2".into(),
        container_format: "bare".into(),
        visibility: Some(Visibility::Private),
        os_hidden: true,
        tags: tags.iter().map(|t| t.to_string()).collect(),
        min_disk: None,
        min_ram: None,
        properties: [
            ("hephaestus_profile".to_string(), "lucy".to_string()),
            ("hephaestus_generation".to_string(), generation.to_string()),
        ]
        .into(),
    };
    // A candidate of a publish that never finished: not a generation to promote.
    let candidate = record(
        format!("{}-209901010000-cafecafe", s.stable("lucy")),
        "209901010000-cafecafe",
        &["hephaestus", "candidate"],
    );
    staging
        .call(|g| g.create_image(&candidate))
        .expect("create the candidate record");
    let ran = s.promote(&["lucy"], &["--generation", "209901010000-cafecafe"]);
    ran.expect_code(1)
        .stderr_has("has no generation 209901010000-cafecafe");
    // A second image claiming generation 1 under the family's name: ambiguous.
    let twin = record(
        format!("{}-{generation1}", s.stable("lucy")),
        &generation1,
        &["hephaestus"],
    );
    // A fresh client: the first one's pooled connection may have been closed meanwhile.
    let staging = Cloud::connect(SOURCE);
    staging
        .call(|g| g.create_image(&twin))
        .expect("create the twin record");
    let ran = s.promote(&["lucy"], &["--generation", &generation1]);
    ran.expect_code(1).stderr_has("refusing to guess");
    assert!(
        s.target_ids().is_empty(),
        "nothing reached production\n{ran}"
    );
}

/// The id of project `name` in `cloud` (an admin entry), read with python-openstackclient.
fn project_id(cloud_name: &str, name: &str) -> String {
    text(
        &cloud::openstack(cloud_name, &["project", "show", name]),
        "id",
    )
    .to_owned()
}

/// The members of image `id` as python-openstackclient lists them: (project id, status).
fn members(cloud_name: &str, id: &str) -> Vec<(String, String)> {
    let listed = cloud::openstack(cloud_name, &["image", "member", "list", id]);
    listed
        .as_array()
        .expect("a list of members")
        .iter()
        .map(|m| {
            (
                text(m, "Member ID").to_owned(),
                text(m, "Status").to_owned(),
            )
        })
        .collect()
}

#[test]
fn a_shared_image_reaches_its_member_project_and_promote_applies_the_targets_sharing() {
    let _cloud = cloud::shared();
    // The member: the harness's `admin` project, which is not the publisher's project.
    let member = project_id("local-admin", "admin");
    let member_option = format!("members: [\"{member}\"]");
    let s = Promotion::with_upload_options("shared", &["visibility: shared", &member_option]);
    let published = s.publish(&fixture_flake(), &["generic"]);
    let id = text(entry(&published, "generic"), "image_id");

    let source = cloud::openstack("local-admin", &["image", "show", id]);
    assert_eq!(text(&source, "visibility"), "shared", "{source}");
    assert_eq!(
        members("local", id),
        [(member.clone(), "pending".to_owned())]
    );
    // The member project accepts it on its side, as Glance's sharing flow asks.
    cloud::openstack_run("local-admin", &["image", "set", "--accept", id]);
    assert_eq!(members("local", id), [(member, "accepted".to_owned())]);

    // Promotion applies the target's own settings (its pipeline's promote stage), never the
    // source's visibility or members.
    let prod_member = project_id("local-prod-admin", "admin");
    let file = s.dir.path().join("promote-shared.yaml");
    std::fs::write(
        &file,
        format!(
            "name: promote-shared\nprofiles: all\nstages:\n  - promote:\n      from: {SOURCE}\n      \
             name: \"{}\"\n      visibility: shared\n      members: [\"{prod_member}\"]\n",
            s.template()
        ),
    )
    .expect("write the promote pipeline");
    let mut cmd = pipeline();
    cmd.arg("run")
        .arg(&file)
        .args(["--cloud", TARGET, "--profile", "generic", "--json"])
        .env("HEPHAESTUS_RUN_DIR", s.dir.path().join("run"));
    let ran = util::run_std(&mut cmd);
    ran.expect_code(0);
    let target_id = text(entry(&report(&ran), "generic"), "image_id").to_owned();
    let target = cloud::openstack("local-prod-admin", &["image", "show", &target_id]);
    assert_eq!(text(&target, "visibility"), "shared", "{target}");
    assert_eq!(
        members("local-prod", &target_id),
        [(prod_member, "pending".to_owned())],
        "the target's member, not the source's"
    );
}
