//! `pipeline rollback` and `pipeline prune` against the real local cloud (`make cloud-up`):
//! generations are published by `pipeline run` from copies of the fixture flake whose
//! `generation` file differs, then rolled back, rolled forward and pruned, and every image is
//! read back from Glance.
//!
//! Isolation: each test publishes under its own stable name `<unique prefix>-lucy` and passes
//! `--name` to every command, so it sees only its own family; its images are deleted when it
//! passes (protected ones unprotected first) and kept for inspection when it fails.

use std::collections::BTreeMap;
use std::process::Command;

use hephaestus::glance::{ErrorKind, Image, ImageStatus, NewImage, PatchOp, Visibility};
use hephaestus::lifecycle;
use serde_json::Value;

use crate::cloud::{self, assert_current, assert_kept, generation, Cloud, Sandbox};
use crate::util::{self, report as json, PipelineCopy, Ran};

const PROFILE: &str = "lucy";

/// One test's family of lucy images and the means to publish, roll back and prune it.
struct Family {
    sandbox: Sandbox,
    client: std::cell::RefCell<Option<Cloud>>,
}

cloud::sandbox_deref!(Family);

impl Family {
    /// Checks the cloud is up, then writes `<tmp>/publish-all.yaml`: the shipped publish-all
    /// pipeline with upload name `<prefix>-{profile}`.
    fn new(test: &str) -> Family {
        // Retention after each publish is off here (keep 100), so that the generations
        // these tests make stay until the test prunes them; the boot proof is left out to
        // save time (it is not what these tests are about).
        let copy = PipelineCopy {
            file: "publish-all.yaml",
            upload_options: &["keep: 100"],
            boot_check: false,
            must_say: &[],
        };
        Family {
            sandbox: Sandbox::new(&format!("lifecycle-{test}"), &copy, &["local"]),
            client: std::cell::RefCell::new(None),
        }
    }

    /// A client of cloud `local`, made anew after each `pipeline` command: an idle client's
    /// pooled connection is closed by Glance while a command runs, and its single-threaded
    /// runtime does not notice until the next request fails on it.
    fn cloud(&self) -> std::cell::Ref<'_, Cloud> {
        if self.client.borrow().is_none() {
            *self.client.borrow_mut() = Some(Cloud::connect("local"));
        }
        std::cell::Ref::map(self.client.borrow(), |c| {
            c.as_ref().expect("connected just above")
        })
    }

    /// The stable name.
    fn name(&self) -> String {
        format!("{}-{PROFILE}", self.prefix)
    }

    /// Publishes lucy built from a fixture flake whose `generation` file says `content`
    /// (the same content in every test, so Nix builds each once) and returns the new current
    /// image as Glance has it.
    fn publish(&self, content: &str) -> Image {
        let flake = self.changed_flake(content);
        let mut cmd = util::cloud_pipeline(&cloud::clouds_yaml());
        cmd.arg("run")
            .arg(&self.pipeline)
            .args([
                "--cloud",
                "local",
                "--profile",
                PROFILE,
                "--json",
                "--flake",
            ])
            .arg(&flake)
            .env("HEPHAESTUS_RUN_DIR", self.dir.path().join("run"));
        let ran = self.run(cmd);
        ran.expect_code(0);
        let report = json(&ran);
        let entry = &report["images"][0];
        assert_eq!(entry["status"], "published", "{ran}");
        let id = entry["image_id"]
            .as_str()
            .unwrap_or_else(|| panic!("no image_id in the report\n{ran}"));
        let image = self.cloud().image(id);
        assert_current(&image, &self.name());
        image
    }

    /// `pipeline run` of lucy from the flake whose `generation` file says `content`, without
    /// expecting any outcome.
    fn try_publish(&self, content: &str) -> Ran {
        let flake = self.changed_flake(content);
        let mut cmd = util::cloud_pipeline(&cloud::clouds_yaml());
        cmd.arg("run")
            .arg(&self.pipeline)
            .args([
                "--cloud",
                "local",
                "--profile",
                PROFILE,
                "--json",
                "--flake",
            ])
            .arg(&flake)
            .env("HEPHAESTUS_RUN_DIR", self.dir.path().join("run"));
        self.run(cmd)
    }

    /// `pipeline check --cloud local --profile lucy --name <name> --json <extra>`, which must
    /// find the family sound.
    fn assert_sound(&self) {
        let name = self.name();
        let ran = self.pipeline(&[
            "check",
            "--cloud",
            "local",
            "--profile",
            PROFILE,
            "--name",
            &name,
            "--json",
        ]);
        ran.expect_code(0);
        assert_eq!(json(&ran)["found"], serde_json::json!([]), "{ran}");
    }

    /// `pipeline <args>` against the harness's clouds.yaml.
    fn pipeline(&self, args: &[&str]) -> Ran {
        let mut cmd = util::cloud_pipeline(&cloud::clouds_yaml());
        cmd.args(args);
        self.run(cmd)
    }

    /// `pipeline rollback lucy --cloud local --name <name> --json <extra>`.
    fn rollback(&self, extra: &[&str]) -> Ran {
        let name = self.name();
        let mut args = vec!["rollback", PROFILE, "--cloud", "local", "--name", &name];
        args.push("--json");
        args.extend_from_slice(extra);
        self.pipeline(&args)
    }

    /// `pipeline prune --cloud local --profile lucy --name <name> --json <extra>`.
    fn prune(&self, extra: &[&str]) -> Ran {
        let name = self.name();
        let mut args = vec![
            "prune",
            "--cloud",
            "local",
            "--profile",
            PROFILE,
            "--name",
            &name,
            "--json",
        ];
        args.extend_from_slice(extra);
        self.pipeline(&args)
    }

    /// Runs `cmd` to completion, dropping the client first (see [`Self::cloud`]).
    fn run(&self, mut cmd: Command) -> Ran {
        self.client.borrow_mut().take();
        util::run_std(&mut cmd)
    }

    /// Every image of the test, by id.
    fn images(&self) -> BTreeMap<String, Image> {
        self.cloud()
            .images_named(&self.prefix)
            .into_iter()
            .map(|i| (i.id.clone(), i))
            .collect()
    }

    /// The image `id` now, or a panic.
    fn image(&self, id: &str) -> Image {
        self.cloud().image(id)
    }

    fn patch(&self, id: &str, ops: &[PatchOp]) {
        self.cloud()
            .call(|g| g.update_image(id, ops))
            .unwrap_or_else(|e| panic!("PATCH {id}: {}", cloud::chain(&e)));
    }
}

fn ids(list: &Value) -> Vec<String> {
    list.as_array()
        .unwrap_or_else(|| panic!("not a list: {list}"))
        .iter()
        .map(|d| d["id"].as_str().unwrap_or_default().to_string())
        .collect()
}

#[test]
fn rollback_swaps_current_and_previous_and_is_idempotent() {
    let _share = cloud::shared();
    let family = Family::new("swap");
    let name = family.name();
    let g1 = family.publish("lifecycle-1");
    let g2 = family.publish("lifecycle-2");
    assert_kept(&family.image(&g1.id), &name, Some("previous"));

    let ran = family.rollback(&[]);
    ran.expect_code(0).stderr_has("is now the current image");
    let doc = json(&ran);
    assert_eq!(doc["changed"], true, "{ran}");
    assert_eq!(doc["current"]["id"], g1.id.as_str(), "{ran}");
    assert_eq!(doc["replaced"]["id"], g2.id.as_str(), "{ran}");
    assert_eq!(doc["cloud"], "local", "{ran}");
    assert_current(&family.image(&g1.id), &name);
    assert_kept(&family.image(&g2.id), &name, Some("rolled-back"));

    // Again: nothing to do, and nothing changes.
    let before = family.images();
    let ran = family.rollback(&[]);
    ran.expect_code(0).stderr_has("already rolled back");
    assert_eq!(json(&ran)["changed"], false, "{ran}");
    assert_eq!(
        family.images(),
        before,
        "a repeated rollback changed images"
    );
    // Asking for the generation that is current is a no-op too.
    let ran = family.rollback(&["--to", &generation(&g1)]);
    ran.expect_code(0)
        .stderr_has("already is the current image");
    assert_eq!(json(&ran)["changed"], false, "{ran}");
    assert_eq!(
        family.images(),
        before,
        "rollback to the current changed images"
    );

    // Roll forward: as if the rollback never happened.
    let ran = family.rollback(&["--to", &generation(&g2)]);
    ran.expect_code(0);
    assert_current(&family.image(&g2.id), &name);
    assert_kept(&family.image(&g1.id), &name, Some("previous"));
    assert_eq!(family.images().len(), 2);
}

#[test]
fn rollback_to_a_named_generation() {
    let _share = cloud::shared();
    let family = Family::new("named");
    let name = family.name();
    let g1 = family.publish("lifecycle-1");
    let g2 = family.publish("lifecycle-2");
    let g3 = family.publish("lifecycle-3");

    let ran = family.rollback(&["--to", "197001010000-nothere"]);
    ran.expect_code(1)
        .stderr_has("has no generation 197001010000-nothere")
        .stderr_has(&generation(&g2));
    assert_current(&family.image(&g3.id), &name);

    let ran = family.rollback(&["--to", &generation(&g1)]);
    ran.expect_code(0);
    let doc = json(&ran);
    assert_eq!(doc["current"]["id"], g1.id.as_str(), "{ran}");
    assert_eq!(doc["replaced"]["id"], g3.id.as_str(), "{ran}");
    assert_current(&family.image(&g1.id), &name);
    assert_kept(&family.image(&g3.id), &name, Some("rolled-back"));
    // g2 stays kept, and no longer claims to be the generation the current one replaced.
    assert_kept(&family.image(&g2.id), &name, None);
    // A plain rollback now would walk further back without being asked: it does nothing.
    family
        .rollback(&[])
        .expect_code(0)
        .stderr_has("already rolled back");
    assert_current(&family.image(&g1.id), &name);
}

#[test]
fn rollback_refuses_without_previous_inactive_target_or_clear_name() {
    let _share = cloud::shared();
    let family = Family::new("refuse");
    let name = family.name();
    let g1 = family.publish("lifecycle-1");

    family
        .rollback(&[])
        .expect_code(1)
        .stderr_has("has no previous generation to roll back to");
    assert_current(&family.image(&g1.id), &name);

    // A generation record that never got its data, tagged like the previous generation.
    let queued_generation = "197001010000-queued00";
    let new = NewImage {
        name: format!("{name}-{queued_generation}"),
        disk_format: "qcow2".into(),
        container_format: "bare".into(),
        visibility: Some(Visibility::Private),
        os_hidden: true,
        tags: vec![
            "hephaestus".into(),
            format!("profile:{PROFILE}"),
            "previous".into(),
        ],
        properties: [
            ("hephaestus_profile".to_string(), PROFILE.to_string()),
            (
                "hephaestus_generation".to_string(),
                queued_generation.to_string(),
            ),
        ]
        .into(),
        ..NewImage::default()
    };
    let queued = family
        .cloud()
        .call(|g| g.create_image(&new))
        .unwrap_or_else(|e| panic!("create a queued image: {}", cloud::chain(&e)));
    assert_eq!(queued.status, ImageStatus::Queued);
    let before = family.images();
    for extra in [&[][..], &["--to", queued_generation][..]] {
        family
            .rollback(extra)
            .expect_code(1)
            .stderr_has("is queued, not active");
    }
    assert_eq!(family.images(), before, "a refused rollback changed images");

    // Two families of lucy with a current image: which one is meant must be said.
    let other = NewImage {
        name: format!("{}-other-{PROFILE}", family.prefix),
        os_hidden: false,
        tags: vec!["hephaestus".into(), "current".into()],
        ..new.clone()
    };
    family
        .cloud()
        .call(|g| g.create_image(&other))
        .unwrap_or_else(|e| panic!("create a second current image: {}", cloud::chain(&e)));
    family
        .pipeline(&["rollback", PROFILE, "--cloud", "local"])
        .expect_code(2)
        .stderr_has("--name")
        .stderr_has(&name)
        .stderr_has(&other.name);
    assert_current(&family.image(&g1.id), &name);
}

#[test]
fn prune_keeps_n_and_never_current_previous_keep_or_protected() {
    let _share = cloud::shared();
    let family = Family::new("prune");
    let name = family.name();
    let g: Vec<Image> = (1..=5)
        .map(|n| family.publish(&format!("lifecycle-{n}")))
        .collect();
    let all: Vec<String> = g.iter().map(|i| i.id.clone()).collect();
    let present = || family.images().into_keys().collect::<Vec<_>>();
    let mut sorted_all = all.clone();
    sorted_all.sort();

    // Dry run, keep 3: the two oldest would go; nothing goes.
    let ran = family.prune(&["--keep", "3", "--dry-run"]);
    ran.expect_code(0).stderr_has("would delete");
    let doc = json(&ran);
    assert_eq!(doc["dry_run"], true);
    let plan = &doc["families"][0];
    assert_eq!(plan["name"], name.as_str(), "{ran}");
    assert_eq!(
        ids(&plan["delete"]),
        [all[1].clone(), all[0].clone()],
        "{ran}"
    );
    assert_eq!(plan["delete"][0]["generation"], generation(&g[1]).as_str());
    assert!(plan["delete"][0]["reason"]
        .as_str()
        .is_some_and(|r| r.contains("older than the 3 newest")));
    assert_eq!(present(), sorted_all, "a dry run deleted images");

    // Pin g1 with the tag `keep` and protect g3; g4 is previous, g5 current.
    let mut g1_tags = family.image(&all[0]).tags;
    g1_tags.push("keep".into());
    family.patch(&all[0], &[PatchOp::tags(g1_tags.clone())]);
    family.patch(&all[2], &[PatchOp::replace("protected", true)]);

    let ran = family.prune(&["--keep", "1", "--dry-run"]);
    ran.expect_code(0);
    let plan = &json(&ran)["families"][0];
    assert_eq!(ids(&plan["delete"]), [all[1].clone()], "{ran}");
    let reasons: BTreeMap<String, String> = plan["kept"]
        .as_array()
        .expect("kept")
        .iter()
        .map(|d| {
            (
                d["id"].as_str().unwrap_or_default().to_string(),
                d["reason"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    assert_eq!(reasons[&all[4]], "current generation", "{ran}");
    assert!(reasons[&all[3]].starts_with("previous generation"), "{ran}");
    assert_eq!(reasons[&all[2]], "protected", "{ran}");
    assert_eq!(reasons[&all[0]], "tagged `keep`", "{ran}");
    assert_eq!(present(), sorted_all, "a dry run deleted images");

    // The real thing, keep 1: only g2 goes.
    let ran = family.prune(&["--keep", "1"]);
    ran.expect_code(0).stderr_has("deleted");
    let report = &json(&ran)["families"][0];
    assert_eq!(ids(&report["deleted"]), [all[1].clone()], "{ran}");
    assert_eq!(ids(&report["hidden"]), Vec::<String>::new(), "{ran}");
    let mut left = vec![
        all[0].clone(),
        all[2].clone(),
        all[3].clone(),
        all[4].clone(),
    ];
    left.sort();
    assert_eq!(present(), left);
    let gone = family.cloud().call(|gl| gl.get_image(&all[1]));
    assert!(
        matches!(&gone, Err(e) if e.kind() == ErrorKind::NotFound),
        "g2 is still there: {gone:?}"
    );
    assert_current(&family.image(&all[4]), &name);
    assert_kept(&family.image(&all[3]), &name, Some("previous"));
    // Nothing more to do.
    let ran = family.prune(&["--keep", "1"]);
    ran.expect_code(0);
    assert_eq!(
        ids(&json(&ran)["families"][0]["deleted"]),
        Vec::<String>::new()
    );

    // Glance refuses a delete (g1 became protected after the plan was made): the image is
    // hidden and kept, and the report says why.
    let unpinned: Vec<String> = g1_tags.into_iter().filter(|t| t != "keep").collect();
    family.patch(&all[0], &[PatchOp::tags(unpinned)]);
    let plan = family
        .cloud()
        .call(|gl| lifecycle::plan_retention(gl, PROFILE, &name, 1))
        .unwrap_or_else(|e| panic!("plan retention: {}", cloud::chain(&e)));
    let to_delete: Vec<&str> = plan.delete.iter().map(|d| d.image.id.as_str()).collect();
    assert_eq!(to_delete, [all[0].as_str()], "{plan:#?}");
    family.patch(&all[0], &[PatchOp::replace("protected", true)]);
    let report = family
        .cloud()
        .call(|gl| lifecycle::execute_retention(gl, &plan));
    assert!(report.ok(), "{report:#?}");
    assert!(report.deleted.is_empty(), "{report:#?}");
    assert_eq!(report.hidden.len(), 1, "{report:#?}");
    let detail = report.hidden[0].detail.as_deref().unwrap_or_default();
    assert!(
        detail.contains("HTTP 403") && detail.contains("hidden instead"),
        "{report:#?}"
    );
    let g1_now = family.image(&all[0]);
    assert!(g1_now.os_hidden, "{}", cloud::describe(&g1_now));
    assert_eq!(present(), left);
}

#[test]
fn upload_option_keep_applies_retention_after_each_publish() {
    let _share = cloud::shared();
    let family = Family::new("keep");
    let text = std::fs::read_to_string(&family.pipeline).expect("read the pipeline copy");
    assert!(
        text.contains("keep: 100"),
        "the copy sets keep: 100\n{text}"
    );
    std::fs::write(&family.pipeline, text.replace("keep: 100", "keep: 2")).expect("write");
    let g: Vec<Image> = (1..=4)
        .map(|n| family.publish(&format!("lifecycle-keep-{n}")))
        .collect();
    // Keep 2, the current one included: g4 (current) and g3 (previous) stay; g1 and g2 went.
    let left: Vec<String> = family.images().into_keys().collect();
    let mut want = vec![g[3].id.clone(), g[2].id.clone()];
    want.sort();
    assert_eq!(left, want, "after four publishes with keep: 2");
    let previous = family.image(&g[2].id);
    assert!(previous.os_hidden && previous.tags.iter().any(|t| t == "previous"));
}

#[test]
fn only_the_generation_just_replaced_stays_tagged_previous() {
    let _share = cloud::shared();
    let family = Family::new("one-previous");
    let g: Vec<Image> = (1..=3)
        .map(|n| family.publish(&format!("lifecycle-one-previous-{n}")))
        .collect();
    // g3 is current, g2 the one it replaced; g1 is kept but no longer `previous`.
    let tagged: Vec<String> = family
        .images()
        .into_values()
        .filter(|i| i.tags.iter().any(|t| t == "previous"))
        .map(|i| i.id)
        .collect();
    assert_eq!(
        tagged,
        [g[1].id.clone()],
        "exactly one generation is previous"
    );
    let g1 = family.image(&g[0].id);
    assert!(g1.os_hidden, "g1 stays, hidden");
}

#[test]
fn a_rollback_holds_its_build_until_the_flake_changes_or_it_is_released() {
    let _share = cloud::shared();
    let family = Family::new("held");
    let name = family.name();
    let g1 = family.publish("lifecycle-1");
    let g2 = family.publish("lifecycle-2");
    family.rollback(&[]).expect_code(0);
    assert_current(&family.image(&g1.id), &name);

    // The flake still builds g2: the run holds it instead of publishing it again.
    let before = family.images();
    let ran = family.try_publish("lifecycle-2");
    ran.expect_code(0);
    let report = json(&ran);
    let entry = &report["images"][0];
    assert_eq!(entry["status"], "held", "{ran}");
    assert_eq!(entry["bytes_sent"], 0, "{ran}");
    let why = entry["held"].as_str().unwrap_or_default();
    assert!(
        why.contains(&g2.id) && why.contains("pipeline release lucy --cloud local"),
        "the report says which rollback holds it and how to lift the hold: {why}\n{ran}"
    );
    ran.stderr_has("held");
    assert_eq!(family.images(), before, "a held run changed the cloud");
    family.assert_sound();

    // A real fix, another build, publishes normally.
    let g3 = family.publish("lifecycle-3");
    assert_ne!(g3.id, g1.id);
    assert_kept(&family.image(&g1.id), &name, Some("previous"));
    assert_kept(&family.image(&g2.id), &name, Some("rolled-back"));
    family.assert_sound();

    // Released, the rolled-back build may be published again.
    family.rollback(&[]).expect_code(0);
    assert_current(&family.image(&g1.id), &name);
    assert!(family
        .try_publish("lifecycle-3")
        .expect_code(0)
        .stdout
        .contains("\"held\""));
    let ran = family.pipeline(&[
        "release", PROFILE, "--cloud", "local", "--name", &name, "--json",
    ]);
    ran.expect_code(0);
    let released: Vec<String> = json(&ran)["released"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|g| g["id"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    assert!(
        released.contains(&g2.id) && released.contains(&g3.id),
        "both rolled-back builds are released: {released:?}\n{ran}"
    );
    let again = family.publish("lifecycle-3");
    assert_eq!(
        again.property("hephaestus_store_path"),
        g3.property("hephaestus_store_path"),
        "the released build is current again"
    );
    family.assert_sound();
}
