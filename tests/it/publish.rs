//! `pipeline run publish-all` end to end: the fixture flake's images built offline by Nix,
//! published into the real local Glance (`make cloud-up`), read back by an independent client
//! (the harness's python-openstackclient), and the DESIGN §6 lifecycle under faults injected
//! by the hand-written TCP proxy of `proxy.rs` and by killing Glance mid-upload.
//!
//! Isolation: each test runs its own copy of `pipelines/publish-all.yaml` whose upload name is
//! `<unique prefix>-{profile}`, so the images of one test are exactly those whose name starts
//! with its prefix. They are deleted when the test passes and kept when it fails. Every test
//! fails, naming `make cloud-up`, when the clouds are not running.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use hephaestus::glance::ImageFilter;
use md5::Md5;
use serde_json::{json, Value};
use sha2::{Digest, Sha512};

use crate::cloud::{self, assert_current, Cloud, Sandbox};
use crate::proxy::{Fault, Proxy, Request};
use crate::util::{
    self, entry, fixture_flake, hex, number, report, text, Background, PipelineCopy, Ran,
};

const PROFILES: [&str; 5] = ["generic", "lucy", "makise", "quinn", "sunraku"];

/// Which stages of the shipped pipeline a test runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stages {
    /// All of them.
    Shipped,
    /// All but `boot-check`.
    WithoutBootCheck,
}

/// What every test starts from: its prefix, a temp dir, and its pipeline file.
struct Setup {
    sandbox: Sandbox,
}

cloud::sandbox_deref!(Setup);

impl Setup {
    /// Checks the cloud is up, then writes `<tmp>/publish-all.yaml`: the shipped pipeline
    /// with upload name `<prefix>-{profile}` and without its boot check, which boots every
    /// image under QEMU (seconds each without KVM) and has tests of its own.
    fn new(test: &str) -> Setup {
        Self::with_stages(test, Stages::WithoutBootCheck)
    }

    /// [`Setup::new`], choosing whether the boot check stays.
    fn with_stages(test: &str, stages: Stages) -> Setup {
        Self::with_options(test, stages, &[])
    }

    /// [`Setup::with_stages`], with these upload options.
    fn with_options(test: &str, stages: Stages, upload_options: &[&str]) -> Setup {
        let copy = PipelineCopy {
            file: "publish-all.yaml",
            upload_options,
            boot_check: stages == Stages::Shipped,
            must_say: &[],
        };
        Setup {
            sandbox: Sandbox::new(test, &copy, &["local"]),
        }
    }

    /// `pipeline --root <repo> run <copy> --cloud local --flake FLAKE --json [--profile P]...`
    /// with `OS_CLIENT_CONFIG_FILE=clouds` and the offline Nix settings.
    fn command(&self, flake: &Path, profiles: &[&str], clouds: &Path) -> Command {
        let mut cmd = util::cloud_pipeline(clouds);
        cmd.arg("run")
            .arg(&self.pipeline)
            .args(["--cloud", "local", "--flake"])
            .arg(flake)
            .arg("--json");
        for p in profiles {
            cmd.args(["--profile", p]);
        }
        cmd
    }

    /// Runs to completion.
    fn run(&self, flake: &Path, profiles: &[&str], clouds: &Path) -> Ran {
        util::run_std(&mut self.command(flake, profiles, clouds))
    }

    /// Publishes `profiles` from `flake` into `local` directly, expecting success.
    fn publish(&self, flake: &Path, profiles: &[&str]) -> (Ran, Value) {
        let ran = self.run(flake, profiles, &cloud::clouds_yaml());
        ran.expect_code(0);
        let report = report(&ran);
        (ran, report)
    }
}

/// The changed fixture flake: the same text in every test, so Nix builds the changed images
/// once.
const CHANGED: &str = "it-publish-changed";

/// Nothing of the test but `expected` is left in the cloud: no candidate, nothing queued or
/// saving, no killed or extra image.
fn assert_only(admin: &Cloud, prefix: &str, expected: &[&str]) {
    let left = admin.images_named(prefix);
    let described: Vec<String> = left.iter().map(cloud::describe).collect();
    let mut ids: Vec<&str> = left.iter().map(|i| i.id.as_str()).collect();
    ids.sort_unstable();
    let mut want = expected.to_vec();
    want.sort_unstable();
    assert_eq!(
        ids, want,
        "the cloud holds other images of this test than expected: {described:#?}"
    );
}

#[test]
fn publish_all_five_profiles_and_openstack_cli_reads_back_firmware_and_hashes() {
    let _cloud = cloud::shared();
    // The one run of the whole shipped pipeline, boot check included.
    let s = Setup::with_stages("all5", Stages::Shipped);
    let (ran, report) = s.publish(&fixture_flake(), &[]);
    assert_eq!(report["ok"], true, "{ran}");
    let images = report["images"].as_array().expect("images");
    assert_eq!(images.len(), PROFILES.len(), "{ran}");

    for profile in PROFILES {
        let e = entry(&report, profile);
        assert_eq!(text(e, "status"), "published", "{profile}\n{ran}");
        assert_eq!(text(e, "image_name"), s.stable(profile), "{ran}");
        let size = number(e, "size");
        assert!(size > 0, "{e:#}");
        assert_eq!(
            number(e, "bytes_sent"),
            size,
            "{profile}: every byte sent once"
        );
        assert!(e["error"].is_null(), "{e:#}");
        // The shipped pipeline proves each image read its own config drive.
        assert_eq!(text(e, "boot_metadata"), "config-drive", "{e:#}");
        assert!(text(e, "boot_hostname").starts_with("heph-"), "{e:#}");
    }
    let mut hosts: Vec<&str> = PROFILES
        .iter()
        .map(|p| text(entry(&report, p), "boot_hostname"))
        .collect();
    hosts.sort_unstable();
    hosts.dedup();
    assert_eq!(
        hosts.len(),
        PROFILES.len(),
        "a fresh host name per boot: {hosts:?}"
    );

    // Read back with python-openstackclient, in parallel: each call is a Python start-up.
    let ids: Vec<(&str, &str)> = PROFILES
        .iter()
        .map(|profile| ("local", text(entry(&report, profile), "image_id")))
        .collect();
    let shown = cloud::show_all(&ids);

    for (profile, image) in PROFILES.iter().zip(&shown) {
        let e = entry(&report, profile);
        let field = |key: &str| cloud::field(image, key);
        assert_eq!(field("name"), json!(s.stable(profile)), "{image:#}");
        assert_eq!(field("status"), "active", "{image:#}");
        assert_eq!(field("hephaestus_profile"), json!(profile), "{image:#}");
        assert_eq!(field("disk_format"), "qcow2", "{image:#}");
        assert_eq!(field("os_hidden"), false, "{image:#}");
        assert!(
            field("tags")
                .as_array()
                .is_some_and(|t| t.contains(&json!("current"))),
            "{image:#}"
        );
        if *profile == "sunraku" {
            assert_eq!(field("hw_firmware_type"), "bios", "{image:#}");
            assert!(
                field("hw_machine_type").is_null(),
                "sunraku boots legacy BIOS: no q35 machine type\n{image:#}"
            );
        } else {
            assert_eq!(field("hw_firmware_type"), "uefi", "{profile}: {image:#}");
            assert_eq!(field("hw_machine_type"), "q35", "{profile}: {image:#}");
        }
        // SCS-0102: the mandatory properties, with values the standard allows.
        let purpose = match *profile {
            "sunraku" => "network",
            "generic" => "generic",
            _ => "custom",
        };
        assert_eq!(field("os_purpose"), purpose, "{profile}: {image:#}");
        for (key, value) in [
            ("hypervisor_type", "qemu"),
            ("hw_disk_bus", "scsi"),
            ("hw_scsi_model", "virtio-scsi"),
            ("hw_rng_model", "virtio"),
            ("image_original_user", "none"),
            ("image_source", "private"),
            ("replace_frequency", "critical_bug"),
            ("provided_until", "none"),
            ("uuid_validity", "last-3"),
            ("hw_qemu_guest_agent", "yes"),
            ("architecture", "x86_64"),
            ("os_distro", "nixos"),
        ] {
            assert_eq!(field(key), value, "{profile}: {key}\n{image:#}");
        }
        assert!(
            field("image_description")
                .as_str()
                .is_some_and(|d| !d.is_empty()),
            "{image:#}"
        );
        assert!(
            field("min_ram").as_u64().is_some_and(|r| r > 0),
            "{image:#}"
        );
        // Built before it was registered: `YYYY-MM-DD hh:mm` sorts as time does.
        let built = field("image_build_date")
            .as_str()
            .unwrap_or_default()
            .to_string();
        let created = field("created_at")
            .as_str()
            .unwrap_or_default()
            .replace('T', " ");
        assert_eq!(built.len(), 16, "{image:#}");
        assert!(
            built[..16] <= created[..16],
            "built {built}, registered {created}"
        );
        // Glance's own hashes of what it stored equal ours.
        assert_eq!(field("os_hash_algo"), "sha512", "{image:#}");
        assert_eq!(field("os_hash_value"), e["sha512"], "{profile}: sha512");
        assert_eq!(field("checksum"), e["md5"], "{profile}: md5");
        assert_eq!(field("size"), e["size"], "{profile}: size");
    }
}

#[test]
fn second_identical_run_skips_all_five_and_sends_no_bytes() {
    let _cloud = cloud::shared();
    let s = Setup::new("again");
    let (_, first) = s.publish(&fixture_flake(), &[]);
    let (ran, second) = s.publish(&fixture_flake(), &[]);
    assert_eq!(second["ok"], true, "{ran}");
    for profile in PROFILES {
        let (a, b) = (entry(&first, profile), entry(&second, profile));
        assert_eq!(text(a, "status"), "published", "{profile}");
        assert_eq!(text(b, "status"), "skipped", "{profile}\n{ran}");
        assert_eq!(number(b, "bytes_sent"), 0, "{profile}\n{ran}");
        assert_eq!(
            text(b, "image_id"),
            text(a, "image_id"),
            "{profile}: the skip names the image already current"
        );
    }
    let admin = Cloud::connect("local-admin");
    let ids: Vec<&str> = PROFILES
        .iter()
        .map(|p| text(entry(&first, p), "image_id"))
        .collect();
    assert_only(&admin, &s.prefix, &ids);
}

#[test]
fn changed_image_becomes_current_and_the_old_one_is_kept_hidden_as_previous() {
    let _cloud = cloud::shared();
    let s = Setup::new("changed");
    let stable = s.stable("lucy");
    let (_, first) = s.publish(&fixture_flake(), &["lucy"]);
    let old_id = text(entry(&first, "lucy"), "image_id").to_owned();

    let (ran, second) = s.publish(&s.changed_flake(CHANGED), &["lucy"]);
    let e = entry(&second, "lucy");
    assert_eq!(text(e, "status"), "published", "{ran}");
    let new_id = text(e, "image_id").to_owned();
    assert_ne!(new_id, old_id, "a changed image is a new image\n{ran}");
    assert_ne!(e["store_path"], entry(&first, "lucy")["store_path"]);

    let local = Cloud::connect("local");
    let new = local.image(&new_id);
    assert_current(&new, &stable);
    assert_eq!(
        new.property("hephaestus_store_path"),
        e["store_path"].as_str()
    );

    let old = local.image(&old_id);
    cloud::assert_kept(&old, &stable, Some("previous"));
    let kept_name = format!("{stable}-{}", cloud::generation(&old));

    // A lookup by the stable name finds the new image only.
    let by_stable_name = ImageFilter {
        name: Some(stable.clone()),
        ..ImageFilter::default()
    };
    let by_name = local
        .call(|g| g.list_images(&by_stable_name))
        .expect("list by name");
    let ids: Vec<&str> = by_name.iter().map(|i| i.id.as_str()).collect();
    assert_eq!(ids, vec![new_id.as_str()]);

    // And an independent client finds the old one among the hidden images under its new name.
    let hidden = cloud::openstack(
        "local",
        &["image", "list", "--hidden", "--name", &kept_name],
    );
    let hidden_ids: Vec<&str> = hidden
        .as_array()
        .map(|a| a.iter().filter_map(|i| i["ID"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(hidden_ids, vec![old_id.as_str()], "{hidden:#}");
}

#[test]
fn wrong_password_is_an_authentication_error_exit_2_and_creates_nothing() {
    let _cloud = cloud::shared();
    let s = Setup::new("badpw");
    let admin = Cloud::connect("local-admin");
    assert_only(&admin, &s.prefix, &[]);
    let bad = "not-the-password-7Qx";
    let clouds = cloud::clouds_yaml_copy(s.dir.path(), |c| {
        c["local"]["auth"]["password"] = json!(bad);
    });
    let real = cloud::clouds()["clouds"]["local"]["auth"]["password"]
        .as_str()
        .expect("the harness's password")
        .to_owned();

    let ran = s.run(&fixture_flake(), &["lucy"], &clouds);
    ran.expect_code(2);
    assert!(
        ran.stderr.to_lowercase().contains("authenticat"),
        "stderr names the authentication failure\n{ran}"
    );
    for secret in [bad, real.as_str()] {
        assert!(
            !ran.stderr.contains(secret) && !ran.stdout.contains(secret),
            "a password is printed\n{ran}"
        );
    }
    assert_only(&admin, &s.prefix, &[]);
}

#[test]
fn fault_proxy_image_endpoint_override_sends_glance_calls_through_the_proxy() {
    let _cloud = cloud::shared();
    cloud::require_up();
    let target = Cloud::connect("local").glance_addr();
    let proxy = Proxy::start(target, vec![]);
    let dir = tempfile::tempdir().expect("tempdir");
    let clouds = cloud::clouds_yaml_copy(dir.path(), |c| {
        c["local"]["image_endpoint_override"] = json!(proxy.url());
    });
    let via = Cloud::connect_with("local", &clouds);
    let filter = ImageFilter {
        name: Some("it-override-probe".into()),
        ..ImageFilter::default()
    };
    via.call(|g| g.list_images(&filter))
        .expect("listing through the proxy");
    let stats = proxy.stats();
    assert!(
        stats
            .requests
            .iter()
            .any(|r| r.starts_with("GET /v2/images?")),
        "the image listing went through the proxy: {stats}"
    );
    assert!(stats.bytes_down > 0, "{stats}");
}

/// Starts publishing `s`'s changed lucy through a proxy that throttles Glance to 100 kB/s
/// (~0.75 MiB: the upload takes seconds), and returns once `min_bytes` of the image went
/// through: the run, and the proxy that must outlive it.
fn slow_upload_under_way(s: &Setup, min_bytes: u64) -> (Background, Proxy) {
    let target = Cloud::connect("local").glance_addr();
    let proxy = Proxy::start(
        target,
        vec![Fault::Throttle {
            bytes_per_second: 100_000,
        }],
    );
    let clouds = cloud::clouds_yaml_copy(s.dir.path(), |c| {
        c["local"]["image_endpoint_override"] = json!(proxy.url());
    });
    let mut run = Background::spawn(
        &mut s.command(&s.changed_flake(CHANGED), &["lucy"], &clouds),
        s.dir.path(),
    );
    let deadline = Instant::now() + Duration::from_secs(180);
    while proxy.stats().upload_body_bytes < min_bytes {
        if let Some(status) = run.try_wait() {
            panic!(
                "the run ended ({status}) before the upload was under way; {}\n--- stderr\n{}",
                proxy.stats(),
                run.stderr()
            );
        }
        assert!(
            Instant::now() < deadline,
            "no upload started: {}",
            proxy.stats()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    (run, proxy)
}

#[test]
fn fault_proxy_the_sdk_hashes_appear_only_after_the_bytes_are_in_and_checked() {
    let _cloud = cloud::shared();
    let s = Setup::new("late-hashes");
    // While the bytes flow (slowly, through the proxy), the candidate carries no hash of
    // them: nothing about bytes still on their way is recorded.
    let (run, _proxy) = slow_upload_under_way(&s, 150_000);
    let admin = Cloud::connect("local-admin");
    let during = admin.images_named(&s.prefix);
    assert_eq!(during.len(), 1, "one candidate: {during:?}");
    let candidate = &during[0];
    assert!(
        cloud::has(candidate, "candidate"),
        "{}",
        cloud::describe(candidate)
    );
    for key in [
        "owner_specified.openstack.sha256",
        "owner_specified.openstack.md5",
    ] {
        assert_eq!(candidate.property(key), None, "{key} during the upload");
    }
    let ran = run.finish(Duration::from_secs(300), "pipeline did not finish");
    ran.expect_code(0);
    let report = report(&ran);
    let e = entry(&report, "lucy");
    let image = admin.image(text(e, "image_id"));
    assert_eq!(image.id, candidate.id, "the candidate became current");
    assert_current(&image, &s.stable("lucy"));
    assert_eq!(
        image.property("owner_specified.openstack.sha256"),
        e["sha256"].as_str()
    );
    assert_eq!(
        image.property("owner_specified.openstack.md5"),
        e["md5"].as_str()
    );
}

#[test]
fn fault_proxy_glance_killed_mid_upload_leaves_nothing_half_made_and_the_current_untouched() {
    // Glance of `local` goes away for seconds: no other test of this binary may use it then.
    let _alone = cloud::exclusive();
    let s = Setup::new("kill");
    let stable = s.stable("lucy");
    let (_, first) = s.publish(&fixture_flake(), &["lucy"]);
    let current_id = text(entry(&first, "lucy"), "image_id").to_owned();

    // Bytes are flowing into Glance: kill it.
    let (run, proxy) = slow_upload_under_way(&s, 150_000);
    let _restart = cloud::RestartOnFailure;
    cloud::kill_glance("local");
    let at_kill = proxy.stats();
    let size = number(entry(&first, "lucy"), "size");
    assert!(
        at_kill.upload_body_bytes < size,
        "Glance was killed after the upload ended, not during it: {at_kill}"
    );
    // The dead upload leaves its candidate `saving` until someone deletes it, and only a
    // running Glance can: so Glance is restarted while the run still retries its clean-up
    // (DESIGN §6.8). From now on the proxy answers every upload with 503, so the run cannot
    // end in a late success on a fresh candidate, while its other calls reach the new Glance.
    proxy.add(Fault::Reject503 {
        request: Request::upload(),
        times: usize::MAX,
    });
    cloud::cloud_up();

    let ran = run.finish(Duration::from_secs(300), "pipeline did not finish");
    assert!(
        ran.code != 0 && ran.code != -1,
        "the run fails with an exit code\n{ran}"
    );
    if let Ok(report) = serde_json::from_str::<Value>(&ran.stdout) {
        assert_eq!(text(entry(&report, "lucy"), "status"), "failed", "{ran}");
    }

    let admin = Cloud::connect("local-admin");
    assert_only(&admin, &s.prefix, &[current_id.as_str()]);
    assert_current(&admin.image(&current_id), &stable);
    assert_sound(&s);
}

#[test]
fn fault_proxy_flipped_byte_is_detected_exit_1_and_the_candidate_deleted() {
    let _cloud = cloud::shared();
    let s = Setup::new("flip");
    let stable = s.stable("lucy");
    let (_, first) = s.publish(&fixture_flake(), &["lucy"]);
    let current_id = text(entry(&first, "lucy"), "image_id").to_owned();

    // In the last clusters of the ~0.75 MiB qcow2: data, not a header Glance inspects.
    let offset: u64 = 700_000;
    let target = Cloud::connect("local").glance_addr();
    let proxy = Proxy::start(
        target,
        vec![Fault::FlipByte {
            request: Request::upload(),
            offset,
            times: usize::MAX,
        }],
    );
    let clouds = cloud::clouds_yaml_copy(s.dir.path(), |c| {
        c["local"]["image_endpoint_override"] = json!(proxy.url());
    });
    let ran = s.run(&s.changed_flake(CHANGED), &["lucy"], &clouds);
    ran.expect_code(1);
    assert!(proxy.stats().flipped >= 1, "{}", proxy.stats());

    let report = report(&ran);
    assert_eq!(report["ok"], false, "{ran}");
    let e = entry(&report, "lucy");
    assert_eq!(text(e, "status"), "failed", "{ran}");

    // What we hold and what Glance received.
    let file = Path::new(text(e, "store_path")).join("nixos.qcow2");
    let mut bytes =
        std::fs::read(&file).unwrap_or_else(|err| panic!("read {}: {err}", file.display()));
    let (ours_sha, ours_md5) = (hex(&Sha512::digest(&bytes)), hex(&Md5::digest(&bytes)));
    assert_eq!(text(e, "sha512"), ours_sha, "the report holds our digest");
    bytes[offset as usize] ^= 0xFF;
    let (theirs_sha, theirs_md5) = (hex(&Sha512::digest(&bytes)), hex(&Md5::digest(&bytes)));

    let error = format!("{} {}", e["error"], ran.stderr);
    let names_both = |a: &str, b: &str| error.contains(a) && error.contains(b);
    assert!(
        names_both(&ours_sha, &theirs_sha) || names_both(&ours_md5, &theirs_md5),
        "the error names the mismatch with both values (ours sha512 {ours_sha}, Glance's \
         {theirs_sha}; md5 {ours_md5} vs {theirs_md5})\n{ran}"
    );

    let admin = Cloud::connect("local-admin");
    assert_only(&admin, &s.prefix, &[current_id.as_str()]);
    assert_current(&admin.image(&current_id), &stable);
    assert_sound(&s);
}

#[test]
fn fault_proxy_503_on_the_first_upload_is_retried_and_published() {
    let _cloud = cloud::shared();
    let s = Setup::new("503");
    let target = Cloud::connect("local").glance_addr();
    let proxy = Proxy::start(
        target,
        vec![Fault::Reject503 {
            request: Request::upload(),
            times: 1,
        }],
    );
    let clouds = cloud::clouds_yaml_copy(s.dir.path(), |c| {
        c["local"]["image_endpoint_override"] = json!(proxy.url());
    });
    let ran = s.run(&fixture_flake(), &["lucy"], &clouds);
    ran.expect_code(0);
    let report = report(&ran);
    let e = entry(&report, "lucy");
    assert_eq!(text(e, "status"), "published", "{ran}");

    let stats = proxy.stats();
    assert_eq!(stats.rejected, 1, "{stats}");
    assert!(
        stats.count(&Request::upload()) >= 2,
        "the upload was sent again: {stats}"
    );
    assert!(number(e, "bytes_sent") >= number(e, "size"), "{e:#}");

    let id = text(e, "image_id");
    let admin = Cloud::connect("local-admin");
    // The rejected attempt's candidate is gone; only the published image is left.
    assert_only(&admin, &s.prefix, &[id]);
    let image = admin.image(id);
    assert_current(&image, &s.stable("lucy"));
    assert_eq!(image.os_hash_value.as_deref(), e["sha512"].as_str());
    assert_eq!(image.checksum.as_deref(), e["md5"].as_str());
    assert_sound(&s);
}

#[test]
fn fault_proxy_a_publish_from_another_machine_meanwhile_wins_and_this_candidate_is_deleted() {
    let _cloud = cloud::shared();
    let s = Setup::new("race");
    let stable = s.stable("lucy");
    let (_, first) = s.publish(&fixture_flake(), &["lucy"]);
    let first_id = text(entry(&first, "lucy"), "image_id").to_owned();

    // Run A uploads a changed image slowly.
    let (a, _proxy) = slow_upload_under_way(&s, 50_000);

    // Meanwhile run B, from "another machine" (its own run directory, so not A's lock),
    // publishes another build of the same profile straight into Glance.
    let mut b = s.command(
        &s.changed_flake("it-publish-race-other"),
        &["lucy"],
        &cloud::clouds_yaml(),
    );
    b.env("HEPHAESTUS_RUN_DIR", s.dir.path().join("elsewhere"));
    let b = util::run_std(&mut b);
    b.expect_code(0);
    let b_id = text(entry(&report(&b), "lucy"), "image_id").to_owned();

    // A notices before making its image current, deletes its candidate and fails.
    let a = a.finish(Duration::from_secs(300), "run A did not finish");
    a.expect_code(1).stderr_has("changed during the run");
    let admin = Cloud::connect("local-admin");
    assert_only(&admin, &s.prefix, &[first_id.as_str(), b_id.as_str()]);
    assert_current(&admin.image(&b_id), &stable);
    assert_sound(&s);
}

#[test]
fn import_method_publishes_through_stage_and_glance_direct() {
    let _cloud = cloud::shared();
    let copy = PipelineCopy {
        file: "publish-all.yaml",
        upload_options: &["method: import"],
        boot_check: false,
        must_say: &[],
    };
    let s = Sandbox::new("import", &copy, &["local"]);
    let mut cmd = util::cloud_pipeline(&cloud::clouds_yaml());
    cmd.arg("run")
        .arg(&s.pipeline)
        .args([
            "--cloud",
            "local",
            "--profile",
            "sunraku",
            "--json",
            "--flake",
        ])
        .arg(fixture_flake())
        .arg("-v");
    let ran = util::run_std(&mut cmd);
    ran.expect_code(0);
    // The data went to the staging area, then glance-direct moved it into the store.
    assert!(
        ran.stderr.contains("/stage"),
        "no PUT …/stage in the log\n{ran}"
    );
    assert!(
        ran.stderr.contains("/import"),
        "no POST …/import in the log\n{ran}"
    );
    let report = report(&ran);
    let e = entry(&report, "sunraku");
    assert_eq!(text(e, "status"), "published");
    let image = Cloud::connect("local").image(text(e, "image_id"));
    assert_current(&image, &s.stable("sunraku"));
    assert_eq!(image.os_hash_value.as_deref(), e["sha512"].as_str());
    assert_eq!(image.property("hw_firmware_type"), Some("bios"));
}

/// `pipeline check` of this test's lucy family in `local` finds nothing wrong.
fn assert_sound(s: &Setup) {
    let template = format!("{}-{{profile}}", s.prefix);
    let ran = util::run_std(util::cloud_pipeline(&cloud::clouds_yaml()).args([
        "check",
        "--cloud",
        "local",
        "--profile",
        "lucy",
        "--name",
        &template,
        "--json",
    ]));
    ran.expect_code(0);
    assert_eq!(report(&ran)["found"], json!([]), "{ran}");
}

/// Publishes lucy, then publishes a changed lucy through a proxy cutting the calls that make
/// an image current (`PATCH /v2/images/ID`): `skip` of them pass, the next `times` never reach
/// Glance. Returns the setup, the first image's id and the second run.
fn cut_patches(test: &str, skip: usize, times: usize) -> (Setup, String, Ran, Proxy) {
    let s = Setup::new(test);
    let (_, first) = s.publish(&fixture_flake(), &["lucy"]);
    let current_id = text(entry(&first, "lucy"), "image_id").to_owned();
    let target = Cloud::connect("local").glance_addr();
    let proxy = Proxy::start(
        target,
        vec![Fault::CutBefore {
            request: Request::new("PATCH", "/v2/images/*"),
            skip,
            times,
        }],
    );
    let clouds = cloud::clouds_yaml_copy(s.dir.path(), |c| {
        c["local"]["image_endpoint_override"] = json!(proxy.url());
    });
    let ran = s.run(&s.changed_flake(CHANGED), &["lucy"], &clouds);
    (s, current_id, ran, proxy)
}

#[test]
fn fault_proxy_hashes_that_cannot_be_recorded_keep_the_candidate_from_becoming_current() {
    let _cloud = cloud::shared();
    // The first PATCH after the bytes are checked records the sdk hashes: every attempt at
    // it is cut, on each of the three fresh candidates.
    let (s, current_id, ran, proxy) = cut_patches("cut-hashes", 0, 3);
    ran.expect_code(1).stderr_has("record the hashes of");
    assert!(proxy.stats().dropped >= 1, "{}", proxy.stats());
    let admin = Cloud::connect("local-admin");
    assert_only(&admin, &s.prefix, &[current_id.as_str()]);
    assert_current(&admin.image(&current_id), &s.stable("lucy"));
    assert_sound(&s);
}

#[test]
fn fault_proxy_cut_before_retiring_the_current_image_leaves_it_current_and_exits_1() {
    let _cloud = cloud::shared();
    // The first PATCH (the hashes recorded on the candidate) passes; every attempt at the
    // second (retire the old current image) is cut.
    let (s, current_id, ran, proxy) = cut_patches("cut-retire", 1, 4);
    ran.expect_code(1).stderr_has("retire the current image");
    assert!(proxy.stats().dropped >= 1, "{}", proxy.stats());
    let admin = Cloud::connect("local-admin");
    assert_only(&admin, &s.prefix, &[current_id.as_str()]);
    assert_current(&admin.image(&current_id), &s.stable("lucy"));
    assert_sound(&s);
}

#[test]
fn fault_proxy_cut_before_showing_the_new_image_restores_the_old_one_and_exits_1() {
    let _cloud = cloud::shared();
    // The hashes are recorded and the old image is retired; every attempt at showing the new
    // one is cut; the restore of the old one (the seventh PATCH) goes through.
    let (s, current_id, ran, proxy) = cut_patches("cut-show", 2, 4);
    ran.expect_code(1).stderr_has("make");
    assert!(proxy.stats().dropped >= 4, "{}", proxy.stats());
    let admin = Cloud::connect("local-admin");
    assert_only(&admin, &s.prefix, &[current_id.as_str()]);
    assert_current(&admin.image(&current_id), &s.stable("lucy"));
    assert_sound(&s);
}

#[test]
fn fault_proxy_show_and_restore_both_cut_exit_3_naming_both_images_and_check_repairs() {
    let _cloud = cloud::shared();
    let (s, current_id, ran, _proxy) = cut_patches("cut-stranded", 2, usize::MAX);
    ran.expect_code(3).stderr_has("stopped half-way");
    let e = report(&ran);
    let e = entry(&e, "lucy");
    assert_eq!(text(e, "status"), "failed", "{ran}");
    assert_eq!(e["cleanup_failed"], true, "{ran}");
    let error = text(e, "error");
    assert!(error.contains(&current_id), "names the old image: {error}");
    let admin = Cloud::connect("local-admin");
    let new: Vec<String> = admin
        .images_named(&s.prefix)
        .into_iter()
        .map(|i| i.id)
        .filter(|id| *id != current_id)
        .collect();
    assert_eq!(new.len(), 1, "the new image is kept: {new:?}");
    assert!(error.contains(&new[0]), "names the new image: {error}");
    assert!(
        error.contains("pipeline check"),
        "says how to fix it: {error}"
    );

    // `check` finds the family without a visible current image; `--repair` restores it.
    let template = format!("{}-{{profile}}", s.prefix);
    let check = |repair: bool| {
        let mut cmd = util::cloud_pipeline(&cloud::clouds_yaml());
        cmd.args([
            "check",
            "--cloud",
            "local",
            "--profile",
            "lucy",
            "--name",
            &template,
            "--json",
        ]);
        if repair {
            cmd.arg("--repair");
        }
        cmd.env("HEPHAESTUS_RUN_DIR", s.dir.path().join("run"));
        util::run_std(&mut cmd)
    };
    let found = check(false);
    found
        .expect_code(1)
        .stderr_has("no visible `current` image");
    check(true).expect_code(0).stderr_has("repaired: make");
    assert_current(&admin.image(&current_id), &s.stable("lucy"));
    assert_sound(&s);
}

#[test]
fn fault_proxy_connection_dropped_mid_upload_is_retried_on_a_fresh_candidate_and_published() {
    let _cloud = cloud::shared();
    let s = Setup::new("drop");
    let target = Cloud::connect("local").glance_addr();
    let proxy = Proxy::start(
        target,
        vec![Fault::DropAfter {
            request: Request::upload(),
            after: 200_000,
            times: 1,
        }],
    );
    let clouds = cloud::clouds_yaml_copy(s.dir.path(), |c| {
        c["local"]["image_endpoint_override"] = json!(proxy.url());
    });
    let ran = s.run(&fixture_flake(), &["lucy"], &clouds);
    ran.expect_code(0);
    let stats = proxy.stats();
    assert_eq!(stats.dropped, 1, "{stats}");
    let report = report(&ran);
    let e = entry(&report, "lucy");
    assert_eq!(text(e, "status"), "published", "{ran}");
    assert!(
        number(e, "bytes_sent") > number(e, "size"),
        "the image was sent twice: {e:#}"
    );
    let admin = Cloud::connect("local-admin");
    assert_only(&admin, &s.prefix, &[text(e, "image_id")]);
    assert_sound(&s);
}

#[test]
fn fault_proxy_503_beyond_the_retry_budget_fails_with_exit_1_and_leaves_nothing() {
    let _cloud = cloud::shared();
    let s = Setup::with_options("503-always", Stages::WithoutBootCheck, &["attempts: 2"]);
    let (_, first) = s.publish(&fixture_flake(), &["lucy"]);
    let current_id = text(entry(&first, "lucy"), "image_id").to_owned();
    let target = Cloud::connect("local").glance_addr();
    let proxy = Proxy::start(
        target,
        vec![Fault::Reject503 {
            request: Request::upload(),
            times: usize::MAX,
        }],
    );
    let clouds = cloud::clouds_yaml_copy(s.dir.path(), |c| {
        c["local"]["image_endpoint_override"] = json!(proxy.url());
    });
    let ran = s.run(&s.changed_flake(CHANGED), &["lucy"], &clouds);
    ran.expect_code(1).stderr_has("503");
    assert_eq!(proxy.stats().rejected, 2, "two attempts: {}", proxy.stats());
    let admin = Cloud::connect("local-admin");
    assert_only(&admin, &s.prefix, &[current_id.as_str()]);
    assert_current(&admin.image(&current_id), &s.stable("lucy"));
    assert_sound(&s);
}

#[test]
fn fault_proxy_a_candidate_that_cannot_be_deleted_exits_3_and_names_it() {
    let _cloud = cloud::shared();
    let s = Setup::with_options(
        "undeletable",
        Stages::WithoutBootCheck,
        &["attempts: 1", "cleanup_timeout: 2"],
    );
    let target = Cloud::connect("local").glance_addr();
    let proxy = Proxy::start(
        target,
        vec![
            Fault::Reject503 {
                request: Request::upload(),
                times: usize::MAX,
            },
            Fault::Reject503 {
                request: Request::new("DELETE", "/v2/images/*"),
                times: usize::MAX,
            },
        ],
    );
    let clouds = cloud::clouds_yaml_copy(s.dir.path(), |c| {
        c["local"]["image_endpoint_override"] = json!(proxy.url());
    });
    let ran = s.run(&fixture_flake(), &["lucy"], &clouds);
    ran.expect_code(3);
    let admin = Cloud::connect("local-admin");
    let left = admin.images_named(&s.prefix);
    assert_eq!(left.len(), 1, "the candidate is left: {left:?}");
    let id = &left[0].id;
    ran.stderr_has(&format!("openstack image delete {id}"));
    let report = report(&ran);
    assert_eq!(entry(&report, "lucy")["cleanup_failed"], true, "{ran}");
}

#[test]
fn fault_proxy_glance_silent_after_accepting_an_upload_times_out_and_leaves_nothing() {
    let _cloud = cloud::shared();
    let s = Setup::with_options("silent", Stages::WithoutBootCheck, &["attempts: 1"]);
    let (_, first) = s.publish(&fixture_flake(), &["lucy"]);
    let current_id = text(entry(&first, "lucy"), "image_id").to_owned();
    let target = Cloud::connect("local").glance_addr();
    let proxy = Proxy::start(
        target,
        vec![Fault::Stall {
            request: Request::upload(),
            times: usize::MAX,
        }],
    );
    let clouds = cloud::clouds_yaml_copy(s.dir.path(), |c| {
        c["local"]["image_endpoint_override"] = json!(proxy.url());
        c["local"]["api_timeout"] = json!(2);
    });
    let run = Background::spawn(
        &mut s.command(&s.changed_flake(CHANGED), &["lucy"], &clouds),
        s.dir.path(),
    );
    // The limit only keeps a broken build from hanging the suite.
    let ran = run.finish(Duration::from_secs(300), "the run hung on a silent Glance");
    ran.expect_code(1).stderr_has("nothing moved for 2 s");
    assert!(proxy.stats().stalled >= 1, "{}", proxy.stats());
    let admin = Cloud::connect("local-admin");
    assert_only(&admin, &s.prefix, &[current_id.as_str()]);
    assert_sound(&s);
}

#[test]
fn keystone_down_at_start_is_a_clear_error_naming_its_url_and_nothing_is_built() {
    let _cloud = cloud::shared();
    let s = Setup::new("keystone-down");
    // A port nobody listens on: bound, then released.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let url = format!("http://127.0.0.1:{port}/v3");
    let clouds = cloud::clouds_yaml_copy(s.dir.path(), |c| {
        c["local"]["auth"]["auth_url"] = json!(url);
    });
    let ran = s.run(&fixture_flake(), &["lucy"], &clouds);
    ran.expect_code(1)
        .stderr_has(&format!("127.0.0.1:{port}/v3"))
        .stderr_has("cannot reach cloud `local`")
        .stderr_has("nothing was built or published");
    assert!(!ran.stderr.contains("nix build"), "{ran}");
}

#[test]
fn fault_proxy_keystone_gone_after_authentication_the_run_still_publishes_on_its_token() {
    let _cloud = cloud::shared();
    let s = Setup::new("keystone-gone");
    let keystone: std::net::SocketAddr = {
        let doc = cloud::clouds();
        let auth = doc["clouds"]["local"]["auth"]["auth_url"]
            .as_str()
            .expect("auth_url")
            .to_string();
        let hostport = auth
            .trim_start_matches("http://")
            .split('/')
            .next()
            .unwrap_or_default()
            .to_string();
        hostport.parse().expect("host:port of Keystone")
    };
    let proxy = Proxy::start(keystone, vec![]);
    let clouds = cloud::clouds_yaml_copy(s.dir.path(), |c| {
        c["local"]["auth"]["auth_url"] = json!(format!("{}/v3", proxy.url()));
    });
    let run = Background::spawn(
        &mut s.command(&s.changed_flake(CHANGED), &["lucy"], &clouds),
        s.dir.path(),
    );
    proxy.wait_for("the token request", Duration::from_secs(120), |st| {
        st.requests
            .iter()
            .any(|r| r.starts_with("POST /v3/auth/tokens"))
            && st.bytes_down > 0
    });
    std::thread::sleep(Duration::from_millis(500));
    drop(proxy);
    let ran = run.finish(Duration::from_secs(300), "pipeline did not finish");
    ran.expect_code(0);
    let report = report(&ran);
    let e = entry(&report, "lucy");
    assert_eq!(text(e, "status"), "published", "{ran}");
}

#[test]
fn fault_proxy_an_image_that_turns_killed_fails_and_its_candidate_is_deleted() {
    // Glance v2 no longer kills images itself: the proxy rewrites its answer.
    let _cloud = cloud::shared();
    let s = Setup::new("killed");
    let (_, first) = s.publish(&fixture_flake(), &["lucy"]);
    let current_id = text(entry(&first, "lucy"), "image_id").to_owned();
    let target = Cloud::connect("local").glance_addr();
    let proxy = Proxy::start(
        target,
        vec![Fault::RewriteResponse {
            request: Request::new("GET", "/v2/images/*"),
            from: "\"status\": \"active\"".into(),
            to: "\"status\": \"killed\"".into(),
            times: usize::MAX,
        }],
    );
    let clouds = cloud::clouds_yaml_copy(s.dir.path(), |c| {
        c["local"]["image_endpoint_override"] = json!(proxy.url());
    });
    let ran = s.run(&s.changed_flake(CHANGED), &["lucy"], &clouds);
    ran.expect_code(1).stderr_has("killed");
    assert!(proxy.stats().rewritten >= 1, "{}", proxy.stats());
    let admin = Cloud::connect("local-admin");
    assert_only(&admin, &s.prefix, &[current_id.as_str()]);
    assert_current(&admin.image(&current_id), &s.stable("lucy"));
    assert_sound(&s);
}

#[test]
fn fault_proxy_a_failed_import_reports_glances_reason_and_deletes_the_candidate() {
    let _cloud = cloud::shared();
    let s = Setup::with_options(
        "import-fails",
        Stages::WithoutBootCheck,
        &["method: import", "attempts: 1"],
    );
    let (_, first) = s.publish(&fixture_flake(), &["lucy"]);
    let current_id = text(entry(&first, "lucy"), "image_id").to_owned();
    // The staged bytes lose their qcow2 magic on the way: Glance stages them, and its import
    // task then fails for real.
    let target = Cloud::connect("local").glance_addr();
    let proxy = Proxy::start(
        target,
        vec![Fault::FlipByte {
            request: Request::new("PUT", "/v2/images/*/stage"),
            offset: 0,
            times: usize::MAX,
        }],
    );
    let clouds = cloud::clouds_yaml_copy(s.dir.path(), |c| {
        c["local"]["image_endpoint_override"] = json!(proxy.url());
    });
    let ran = s.run(&s.changed_flake(CHANGED), &["lucy"], &clouds);
    ran.expect_code(1)
        .stderr_has("the import of image")
        .stderr_has("from Glance's import task");
    assert!(proxy.stats().flipped >= 1, "{}", proxy.stats());
    let admin = Cloud::connect("local-admin");
    assert_only(&admin, &s.prefix, &[current_id.as_str()]);
    assert_current(&admin.image(&current_id), &s.stable("lucy"));
    assert_sound(&s);
}

#[test]
fn an_image_over_the_clouds_size_cap_is_a_clear_error_without_retry_and_leaves_nothing() {
    let _cloud = cloud::shared();
    let copy = PipelineCopy {
        file: "publish-all.yaml",
        upload_options: &[],
        boot_check: false,
        must_say: &[],
    };
    // `local-small`'s Glance refuses images over 256 KiB (image_size_cap).
    let s = Sandbox::new("size-cap", &copy, &["local-small"]);
    let mut cmd = util::cloud_pipeline(&cloud::clouds_yaml());
    cmd.arg("run")
        .arg(&s.pipeline)
        .args([
            "--cloud",
            "local-small",
            "--json",
            "--profile",
            "lucy",
            "--flake",
        ])
        .arg(fixture_flake())
        .env("HEPHAESTUS_RUN_DIR", s.dir.path().join("run"));
    let ran = util::run_std(&mut cmd);
    ran.expect_code(1)
        .stderr_has("413")
        .stderr_has("image_size_cap");
    assert!(
        !ran.stderr.contains("trying again on a fresh candidate"),
        "a size cap is not retried\n{ran}"
    );
    let admin = Cloud::connect("local-small-admin");
    assert_only(&admin, &s.prefix, &[]);
}

/// Every file under `dir`, recursively, as text (lossy).
fn all_text_under(dir: &Path) -> String {
    let mut out = String::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        match entry.file_type() {
            Ok(t) if t.is_dir() => out.push_str(&all_text_under(&path)),
            Ok(t) if t.is_file() => out.push_str(&String::from_utf8_lossy(
                &std::fs::read(&path).unwrap_or_default(),
            )),
            _ => {}
        }
    }
    out
}

#[test]
fn no_password_or_token_reaches_any_output_of_any_command_at_any_verbosity() {
    let _cloud = cloud::shared();
    let s = Setup::new("canary");
    let run_dir = s.dir.path().join("run");
    let real = cloud::clouds()["clouds"]["local"]["auth"]["password"]
        .as_str()
        .expect("the harness's password")
        .to_owned();
    let canary = "canary-pw-Zq81x";
    let wrong = cloud::clouds_yaml_copy(s.dir.path(), |c| {
        c["local"]["auth"]["password"] = json!(canary);
    });
    let name = format!("{}-{{profile}}", s.prefix);
    let commands: Vec<Vec<String>> = [
        vec!["images", "--cloud", "local"],
        vec![
            "check",
            "--cloud",
            "local",
            "--profile",
            "lucy",
            "--name",
            &name,
        ],
        vec![
            "prune",
            "--cloud",
            "local",
            "--profile",
            "lucy",
            "--name",
            &name,
            "--dry-run",
        ],
        vec!["rollback", "lucy", "--cloud", "local", "--name", &name],
        vec!["release", "lucy", "--cloud", "local", "--name", &name],
        vec![
            "promote",
            "--from",
            "local",
            "--to",
            "local-prod",
            "--profile",
            "lucy",
            "--name",
            &name,
        ],
    ]
    .iter()
    .map(|c| c.iter().map(|a| a.to_string()).collect())
    .collect();
    let mut seen = String::new();
    for clouds in [&wrong, &cloud::clouds_yaml()] {
        for args in &commands {
            let mut cmd = util::cloud_pipeline(clouds);
            cmd.arg("-vv")
                .args(args)
                .arg("--json")
                .env("RUST_LOG", "trace")
                .env("HEPHAESTUS_RUN_DIR", &run_dir);
            let ran = util::run_std(&mut cmd);
            seen.push_str(&ran.stdout);
            seen.push_str(&ran.stderr);
        }
        let mut run = s.command(&fixture_flake(), &["lucy"], clouds);
        run.arg("-vv").env("RUST_LOG", "trace");
        run.arg("--metrics").arg(s.dir.path().join("metrics.prom"));
        let ran = util::run_std(run.arg("--report").arg(s.dir.path().join("report.json")));
        seen.push_str(&ran.stdout);
        seen.push_str(&ran.stderr);
    }
    // A 403 from Glance, with valid credentials and a real token: under Glance's default
    // policy only an admin may make an image public (publicize_image), and the harness's
    // user is a member.
    let public = Setup::with_options(
        "canary-public",
        Stages::WithoutBootCheck,
        &["visibility: public"],
    );
    let mut run = public.command(&fixture_flake(), &["lucy"], &cloud::clouds_yaml());
    run.arg("-vv")
        .env("RUST_LOG", "trace")
        .env("HEPHAESTUS_RUN_DIR", &run_dir);
    run.arg("--metrics")
        .arg(s.dir.path().join("forbidden.prom"));
    let forbidden = util::run_std(run.arg("--report").arg(s.dir.path().join("forbidden.json")));
    forbidden
        .expect_code(1)
        .stderr_has("POST /v2/images on cloud local: Glance answered HTTP 403 (forbidden)")
        .stderr_has("publicize_image");
    seen.push_str(&forbidden.stdout);
    seen.push_str(&forbidden.stderr);
    seen.push_str(&all_text_under(&run_dir));
    seen.push_str(&std::fs::read_to_string(s.dir.path().join("report.json")).unwrap_or_default());
    seen.push_str(
        &std::fs::read_to_string(s.dir.path().join("forbidden.json")).unwrap_or_default(),
    );
    for file in ["metrics.prom", "forbidden.prom"] {
        let metrics = std::fs::read_to_string(s.dir.path().join(file)).unwrap_or_default();
        assert!(
            metrics.contains("hephaestus_image_status{"),
            "{file} was written: {metrics}"
        );
        seen.push_str(&metrics);
    }
    assert!(
        seen.contains("authenticat"),
        "the wrong password was refused"
    );
    assert!(
        seen.contains("\"status\": \"published\""),
        "the right one published"
    );
    for secret in [canary, real.as_str()] {
        assert!(!seen.contains(secret), "a password leaks");
    }
    // Fernet tokens start with gAAAAA; no token, and no token header, is ever shown.
    assert!(!seen.contains("gAAAAA"), "a token leaks");
    assert!(
        !seen.to_ascii_lowercase().contains("x-auth-token"),
        "the token header leaks"
    );
}

/// Whether the run directory `dir` holds a serial console log of `profile`, i.e. whether
/// QEMU was started for it (boot-check writes the log before QEMU runs).
fn booted_in(dir: &Path, profile: &str) -> bool {
    fn walk(dir: &Path, profile: &str) -> bool {
        std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .any(|e| {
                let path = e.path();
                if path.is_dir() {
                    walk(&path, profile)
                } else {
                    path.components().any(|c| c.as_os_str() == "boot")
                        && path.to_string_lossy().contains(&format!("/{profile}/"))
                }
            })
    }
    walk(dir, profile)
}

#[test]
fn a_rerun_with_nothing_changed_verifies_boots_and_sends_nothing() {
    let _cloud = cloud::shared();
    let s = Setup::with_stages("rerun", Stages::Shipped);
    let cache = s.dir.path().join("cache");
    let run = |dir: &str| {
        let run_dir = s.dir.path().join(dir);
        let mut cmd = s.command(&fixture_flake(), &["lucy"], &cloud::clouds_yaml());
        cmd.env("HEPHAESTUS_RUN_DIR", &run_dir)
            .env("HEPHAESTUS_CACHE_DIR", &cache);
        let ran = util::run_std(&mut cmd);
        ran.expect_code(0);
        (report(&ran), run_dir)
    };
    let (first, first_dir) = run("first");
    let e = entry(&first, "lucy");
    assert_eq!(text(e, "status"), "published", "{e:#}");
    assert!(booted_in(&first_dir, "lucy"), "the first run boots lucy");

    // The same store path is current in the cloud: the run stops right after `build`.
    let (second, second_dir) = run("second");
    let e = entry(&second, "lucy");
    assert_eq!(text(e, "status"), "skipped", "{e:#}");
    assert_eq!(text(e, "image_id"), text(entry(&first, "lucy"), "image_id"));
    assert_eq!(number(e, "bytes_sent"), 0, "{e:#}");
    for stage in ["verify", "boot-check", "upload"] {
        assert_eq!(util::stage_status(e, stage), "skipped", "{stage}: {e:#}");
    }
    assert!(
        !booted_in(&second_dir, "lucy"),
        "QEMU was not started again"
    );
}

#[test]
fn a_boot_proof_is_remembered_by_store_path_and_not_booted_again() {
    let _cloud = cloud::shared();
    // Two families of the same build: the second is not in the cloud yet, so it is
    // verified and sent, but its boot was proven by the first run.
    let first = Setup::with_stages("proof-a", Stages::Shipped);
    let second = Setup::with_stages("proof-b", Stages::Shipped);
    let cache = first.dir.path().join("cache");
    let run = |s: &Setup, extra: &[&str]| {
        let run_dir = s.dir.path().join("run");
        let mut cmd = s.command(&fixture_flake(), &["sunraku"], &cloud::clouds_yaml());
        cmd.args(extra)
            .env("HEPHAESTUS_RUN_DIR", &run_dir)
            .env("HEPHAESTUS_CACHE_DIR", &cache);
        let ran = util::run_std(&mut cmd);
        ran.expect_code(0);
        (report(&ran), run_dir)
    };
    let (a, a_dir) = run(&first, &[]);
    assert_eq!(util::stage_status(entry(&a, "sunraku"), "boot-check"), "ok");
    assert!(booted_in(&a_dir, "sunraku"));
    let proofs = std::fs::read_dir(cache.join("boot-checks"))
        .expect("the proof is remembered under the cache dir")
        .count();
    assert_eq!(proofs, 1);

    let (b, b_dir) = run(&second, &[]);
    let e = entry(&b, "sunraku");
    assert_eq!(text(e, "status"), "published", "{e:#}");
    assert_eq!(util::stage_status(e, "boot-check"), "cached", "{e:#}");
    assert!(!booted_in(&b_dir, "sunraku"), "QEMU was not started");
    let note = e["stages"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["stage"] == "boot-check"))
        .and_then(|s| s["note"].as_str())
        .unwrap_or_default();
    assert!(note.contains("not booted again"), "{note}");

    // --no-boot-cache boots anyway (a new build of the family is needed to get that far:
    // the current image is this build, so a forced boot shows on a fresh family).
    let third = Setup::with_stages("proof-c", Stages::Shipped);
    let (c, c_dir) = run(&third, &["--no-boot-cache"]);
    assert_eq!(util::stage_status(entry(&c, "sunraku"), "boot-check"), "ok");
    assert!(booted_in(&c_dir, "sunraku"));
}

/// A publish into `local` and `local-prod` at once: the test's images in both clouds are
/// cleaned up.
fn two_clouds(test: &str, upload_options: &[&str]) -> Setup {
    let copy = PipelineCopy {
        file: "publish-all.yaml",
        upload_options,
        boot_check: false,
        must_say: &[],
    };
    Setup {
        sandbox: Sandbox::new(test, &copy, &["local", "local-prod"]),
    }
}

/// `pipeline run` of `s` into every cloud of `clouds` (one `--cloud` each).
fn run_into(s: &Setup, clouds: &[&str], profiles: &[&str], clouds_yaml: &Path) -> Ran {
    let mut cmd = util::cloud_pipeline(clouds_yaml);
    cmd.arg("run")
        .arg(&s.pipeline)
        .arg("--flake")
        .arg(fixture_flake())
        .arg("--json");
    for c in clouds {
        cmd.args(["--cloud", c]);
    }
    for p in profiles {
        cmd.args(["--profile", p]);
    }
    util::run_std(&mut cmd)
}

/// The per-cloud entries of `e`'s report, by cloud name.
fn per_cloud<'a>(e: &'a Value, cloud: &str) -> &'a Value {
    e["clouds"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["cloud"] == cloud))
        .unwrap_or_else(|| panic!("no entry for cloud {cloud} in {e:#}"))
}

fn stage_note<'a>(e: &'a Value, stage: &str) -> &'a str {
    e["stages"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["stage"] == stage))
        .and_then(|s| s["note"].as_str())
        .unwrap_or_default()
}

#[test]
fn two_clouds_from_one_read_each_get_their_own_candidate_check_and_current_image() {
    let _cloud = cloud::shared();
    let s = two_clouds("two-clouds", &[]);
    let ran = run_into(
        &s,
        &["local", "local-prod"],
        &["lucy", "sunraku"],
        &cloud::clouds_yaml(),
    );
    ran.expect_code(0);
    let doc = report(&ran);
    assert_eq!(doc["clouds"], json!(["local", "local-prod"]), "{ran}");
    for profile in ["lucy", "sunraku"] {
        let e = entry(&doc, profile);
        assert_eq!(text(e, "status"), "published", "{e:#}");
        let size = number(e, "size");
        let names: Vec<&str> = e["clouds"]
            .as_array()
            .expect("clouds")
            .iter()
            .filter_map(|c| c["cloud"].as_str())
            .collect();
        assert_eq!(names, ["local", "local-prod"], "in the run's order: {e:#}");
        // Each cloud received every byte, from the one read that hashed them.
        assert_eq!(number(e, "bytes_sent"), 2 * size, "{e:#}");
        let file = Path::new(text(e, "store_path")).join("nixos.qcow2");
        let bytes = std::fs::read(&file).expect("read the image");
        assert_eq!(text(e, "sha512"), hex(&Sha512::digest(&bytes)));
        assert_eq!(text(e, "md5"), hex(&Md5::digest(&bytes)));
        assert!(
            stage_note(e, "verify").contains("computed by the upload"),
            "verify leaves the full read to the upload: {e:#}"
        );
        let mut ids = Vec::new();
        for (cloud, admin) in [("local", "local-admin"), ("local-prod", "local-prod-admin")] {
            let c = per_cloud(e, cloud);
            assert_eq!(c["status"], "published", "{cloud}: {c:#}");
            assert_eq!(number(c, "bytes_sent"), size, "{cloud}: {c:#}");
            assert_eq!(c["error"], Value::Null, "{cloud}: {c:#}");
            let id = text(c, "image_id").to_owned();
            let image = Cloud::connect(admin).image(&id);
            assert_current(&image, &s.stable(profile));
            // Glance's own hash, our digests and the sdk's properties agree in each cloud.
            assert_eq!(
                image.os_hash_value.as_deref(),
                e["sha512"].as_str(),
                "{cloud}"
            );
            assert_eq!(image.size, Some(size), "{cloud}");
            assert_eq!(
                image.property("owner_specified.openstack.sha256"),
                e["sha256"].as_str(),
                "{cloud}"
            );
            assert_eq!(
                image.property("owner_specified.openstack.md5"),
                e["md5"].as_str(),
                "{cloud}"
            );
            assert_only(&Cloud::connect(admin), &s.stable(profile), &[id.as_str()]);
            ids.push(id);
        }
        assert_ne!(ids[0], ids[1], "each cloud has its own image");
    }

    // The same clouds named in the pipeline (`clouds:`): both already hold both builds, so
    // nothing is read, booted or sent, and each cloud says so.
    let yaml = std::fs::read_to_string(&s.pipeline).expect("read the copy");
    let yaml = yaml.replace("cloud: staging\n", "clouds: [local, local-prod]\n");
    assert!(yaml.contains("clouds: [local, local-prod]"), "{yaml}");
    std::fs::write(&s.pipeline, yaml).expect("write the copy");
    let again = run_into(&s, &[], &["lucy", "sunraku"], &cloud::clouds_yaml());
    again.expect_code(0);
    let doc = report(&again);
    for profile in ["lucy", "sunraku"] {
        let e = entry(&doc, profile);
        assert_eq!(text(e, "status"), "skipped", "{e:#}");
        assert_eq!(number(e, "bytes_sent"), 0, "{e:#}");
        for cloud in ["local", "local-prod"] {
            assert_eq!(per_cloud(e, cloud)["status"], "skipped", "{cloud}: {e:#}");
        }
        for stage in ["verify", "upload"] {
            assert_eq!(util::stage_status(e, stage), "skipped", "{stage}: {e:#}");
        }
    }
}

#[test]
fn fault_proxy_one_cloud_failing_leaves_the_others_image_current_and_the_exit_code_is_the_worst() {
    let _cloud = cloud::shared();
    let s = two_clouds("cloud-fails", &["attempts: 1", "cleanup_timeout: 2"]);
    let prod = Cloud::connect("local-prod").glance_addr();
    let (local_admin, prod_admin) = (
        Cloud::connect("local-admin"),
        Cloud::connect("local-prod-admin"),
    );

    // A byte flipped on its way into local-prod: that cloud refuses the candidate, local
    // publishes. Exit 1.
    let flipper = Proxy::start(
        prod,
        vec![Fault::FlipByte {
            request: Request::upload(),
            offset: 700_000,
            times: usize::MAX,
        }],
    );
    let flipped = cloud::clouds_yaml_copy(s.dir.path(), |c| {
        c["local-prod"]["image_endpoint_override"] = json!(flipper.url());
    });
    let ran = run_into(&s, &["local", "local-prod"], &["lucy"], &flipped);
    ran.expect_code(1).stderr_has("cloud `local-prod`");
    assert!(flipper.stats().flipped >= 1, "{}", flipper.stats());
    let doc = report(&ran);
    let e = entry(&doc, "lucy");
    assert_eq!(text(e, "status"), "failed", "{e:#}");
    let local = per_cloud(e, "local");
    assert_eq!(local["status"], "published", "{e:#}");
    let local_id = text(local, "image_id").to_owned();
    assert_current(&local_admin.image(&local_id), &s.stable("lucy"));
    let failed = per_cloud(e, "local-prod");
    assert_eq!(failed["status"], "failed", "{e:#}");
    assert!(
        text(failed, "error").contains("differs from ours"),
        "the hash comparison of that cloud failed: {failed:#}"
    );
    assert!(
        prod_admin.images_named(&s.prefix).is_empty(),
        "nothing left in local-prod"
    );
    drop(flipper);

    // The same build again without the fault: local already holds it (not sent again),
    // local-prod gets it.
    let ran = run_into(
        &s,
        &["local", "local-prod"],
        &["lucy"],
        &cloud::clouds_yaml(),
    );
    ran.expect_code(0);
    let doc = report(&ran);
    let e = entry(&doc, "lucy");
    assert_eq!(text(e, "status"), "published", "{e:#}");
    assert_eq!(per_cloud(e, "local")["status"], "skipped", "{e:#}");
    assert_eq!(per_cloud(e, "local")["bytes_sent"], 0, "{e:#}");
    assert_eq!(text(per_cloud(e, "local"), "image_id"), local_id);
    assert_eq!(per_cloud(e, "local-prod")["status"], "published", "{e:#}");
    assert_eq!(number(e, "bytes_sent"), number(e, "size"), "{e:#}");

    // local-prod cannot delete its failed candidate: exit 3 (the worst), naming it, while
    // local publishes sunraku.
    let undeletable = Proxy::start(
        prod,
        vec![
            Fault::Reject503 {
                request: Request::upload(),
                times: usize::MAX,
            },
            Fault::Reject503 {
                request: Request::new("DELETE", "/v2/images/*"),
                times: usize::MAX,
            },
        ],
    );
    let stuck = cloud::clouds_yaml_copy(s.dir.path(), |c| {
        c["local-prod"]["image_endpoint_override"] = json!(undeletable.url());
    });
    let ran = run_into(&s, &["local", "local-prod"], &["sunraku"], &stuck);
    ran.expect_code(3);
    let doc = report(&ran);
    let e = entry(&doc, "sunraku");
    assert_eq!(e["cleanup_failed"], true, "{e:#}");
    assert_eq!(per_cloud(e, "local")["status"], "published", "{e:#}");
    let prod_entry = per_cloud(e, "local-prod");
    assert_eq!(prod_entry["status"], "failed", "{e:#}");
    assert_eq!(prod_entry["cleanup_failed"], true, "{e:#}");
    let left = prod_admin.images_named(&s.stable("sunraku"));
    assert_eq!(
        left.len(),
        1,
        "the candidate is left in local-prod: {left:?}"
    );
    ran.stderr_has(&format!("openstack image delete {}", left[0].id));
    let local_id = text(per_cloud(e, "local"), "image_id");
    assert_current(&local_admin.image(local_id), &s.stable("sunraku"));
}

/// Flips the last byte of a file inside the Nix store, and flips it back when dropped, so the
/// store path is sound again for whatever runs next.
struct Tampered(std::path::PathBuf);

impl Tampered {
    fn flip(path: &Path) {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path).expect("stat").permissions().mode();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode | 0o200))
            .expect("make writable");
        let mut bytes = std::fs::read(path).expect("read");
        let last = bytes.len() - 1;
        bytes[last] ^= 0x5a;
        std::fs::write(path, bytes).expect("write");
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
            .expect("restore mode");
    }
}

impl Drop for Tampered {
    fn drop(&mut self) {
        Tampered::flip(&self.0);
    }
}

#[test]
fn a_store_output_changed_after_its_build_is_caught_while_it_streams_and_nothing_is_left() {
    let _cloud = cloud::shared();
    let s = two_clouds("tampered", &["attempts: 1"]);
    // A build of this test's own, published into local to learn its store path.
    let flake = s.changed_flake("it-publish-tampered");
    let ran = {
        let mut cmd = s.command(&flake, &["lucy"], &cloud::clouds_yaml());
        util::run_std(&mut cmd)
    };
    ran.expect_code(0);
    let doc = report(&ran);
    let e = entry(&doc, "lucy");
    let file = Path::new(text(e, "store_path")).join("nixos.qcow2");
    let registered = {
        let out = Command::new("nix")
            .args(["path-info", "--json", text(e, "store_path")])
            .env("NIX_CONFIG", crate::nix::offline_config())
            .output()
            .expect("nix path-info");
        let doc: Value = serde_json::from_slice(&out.stdout).expect("path-info json");
        // Nix 2.8 prints a list; newer Nix an object keyed by store path.
        let info = if doc.is_array() {
            &doc[0]
        } else {
            &doc[text(e, "store_path")]
        };
        info["narHash"].as_str().expect("narHash").to_owned()
    };

    // One byte of the image changes in the store, far from the header and partition table:
    // the structural checks pass, and the NAR hash computed while the bytes stream into
    // local-prod does not match what Nix registered.
    let _restore = {
        Tampered::flip(&file);
        Tampered(file.clone())
    };
    let mut cmd = util::cloud_pipeline(&cloud::clouds_yaml());
    cmd.arg("run")
        .arg(&s.pipeline)
        .args(["--cloud", "local-prod", "--flake"])
        .arg(&flake)
        .args(["--profile", "lucy", "--json"]);
    let ran = util::run_std(&mut cmd);
    ran.expect_code(1)
        .stderr_has("store integrity check failed")
        .stderr_has(&registered);
    let doc = report(&ran);
    let e = entry(&doc, "lucy");
    assert_eq!(text(e, "status"), "failed", "{e:#}");
    assert_eq!(util::stage_status(e, "verify"), "ok", "{e:#}");
    assert_eq!(util::stage_status(e, "upload"), "failed", "{e:#}");
    let prod = Cloud::connect("local-prod-admin");
    assert!(
        prod.images_named(&s.prefix).is_empty(),
        "no candidate of bytes Nix did not build is left: {:?}",
        prod.images_named(&s.prefix)
    );
}
