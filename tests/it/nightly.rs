//! The nightly pipeline against the real local cloud (`make cloud-up`): the `skip-unchanged`
//! stage compares the flake's evaluated output paths with the cloud's current images, so a
//! second run with the same flake builds and sends nothing, and a changed flake is rebuilt and
//! published. Also the per-cloud run lock: a run that finds another holding the lock of its
//! cloud exits with a clear message instead of racing it.
//!
//! Isolation: each test runs a copy of `pipelines/nightly.yaml` whose upload name is
//! `<unique prefix>-{profile}` (and without `boot-check`, which the publish tests prove), with
//! its own `HEPHAESTUS_RUN_DIR`. Its images are deleted when it passes and kept when it fails.
//! Every test fails, naming `make cloud-up`, when the cloud is not running.

use std::fs::File;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::cloud::{self, assert_current, has, Cloud, Sandbox};
use crate::util::{
    self, entry, fixture_flake, number, report, stage_status, text, Background, PipelineCopy, Ran,
};

const PROFILES: [&str; 5] = ["generic", "lucy", "makise", "quinn", "sunraku"];

/// One test's nightly pipeline copy, run directory and images.
struct Nightly {
    sandbox: Sandbox,
}

cloud::sandbox_deref!(Nightly);

impl Nightly {
    /// Checks the cloud is up, then writes `<tmp>/nightly.yaml`: the shipped nightly pipeline
    /// with upload name `<prefix>-{profile}` and no `boot-check`.
    fn new(test: &str) -> Nightly {
        let copy = PipelineCopy {
            file: "nightly.yaml",
            upload_options: &[],
            boot_check: false,
            must_say: &["- skip-unchanged", "- boot-check:\n      accel: auto"],
        };
        Nightly {
            sandbox: Sandbox::new(&format!("nightly-{test}"), &copy, &["local"]),
        }
    }

    fn run_dir(&self) -> std::path::PathBuf {
        self.dir.path().join("run")
    }

    /// `pipeline [-v] --root <repo> run <copy> --cloud local --flake FLAKE --json
    /// [--profile P]... EXTRA` with this test's run directory, the harness's clouds.yaml and
    /// offline Nix.
    fn command(&self, flake: &Path, profiles: &[&str], verbose: bool, extra: &[&str]) -> Command {
        let mut cmd = util::cloud_pipeline(&cloud::clouds_yaml());
        if verbose {
            cmd.arg("-v");
        }
        cmd.arg("run")
            .arg(&self.pipeline)
            .args(["--cloud", "local", "--json", "--flake"])
            .arg(flake);
        for p in profiles {
            cmd.args(["--profile", p]);
        }
        cmd.args(extra).env("HEPHAESTUS_RUN_DIR", self.run_dir());
        cmd
    }

    /// Runs the nightly to completion and expects success; returns the run and its report.
    fn run(&self, flake: &Path, profiles: &[&str], verbose: bool) -> (Ran, Value) {
        let ran = util::run_std(&mut self.command(flake, profiles, verbose, &[]));
        ran.expect_code(0);
        let report = report(&ran);
        assert_eq!(report["ok"], true, "{ran}");
        (ran, report)
    }

    /// Every image of the test in `local`, hidden ones included, by id (sorted).
    fn image_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = Cloud::connect("local-admin")
            .images_named(&self.prefix)
            .into_iter()
            .map(|i| i.id)
            .collect();
        ids.sort();
        ids
    }
}

/// The debug lines of `-v` that start a `nix` command whose subcommand is `sub`.
fn nix_runs<'a>(stderr: &'a str, sub: &str) -> Vec<&'a str> {
    let needle = format!(" {sub} ");
    stderr
        .lines()
        .filter(|l| {
            l.split_once("running ")
                .is_some_and(|(_, cmd)| cmd.contains("nix") && cmd.contains(&needle))
        })
        .collect()
}

#[test]
fn nightly_publishes_then_builds_and_sends_nothing_until_the_flake_changes() {
    let _cloud = cloud::shared();
    let s = Nightly::new("skip");
    let flake = fixture_flake();

    // First night: nothing in the cloud yet, every profile is built and published, after ONE
    // evaluation of every profile's output path.
    let (ran, first) = s.run(&flake, &[], true);
    for profile in PROFILES {
        let e = entry(&first, profile);
        assert_eq!(text(e, "status"), "published", "{profile}\n{ran}");
        assert_eq!(stage_status(e, "skip-unchanged"), "ok", "{profile}");
        assert_eq!(stage_status(e, "build"), "ok", "{profile}");
        assert_eq!(number(e, "bytes_sent"), number(e, "size"), "{profile}");
    }
    let evals = nix_runs(&ran.stderr, "eval");
    assert_eq!(
        evals.len(),
        1,
        "one `nix eval` for all profiles, found {}: {evals:#?}\n{ran}",
        evals.len()
    );
    for profile in PROFILES {
        assert!(
            // The names travel as a JSON list inside a Nix string: `\"lucy\"`.
            evals[0].contains(&format!("\\\"{profile}\\\"")),
            "the one evaluation covers {profile}: {}",
            evals[0]
        );
    }
    // And one `nix build` for all of them, of the derivations that evaluation gave.
    let builds = nix_runs(&ran.stderr, "build");
    assert_eq!(builds.len(), 1, "one `nix build` for every profile\n{ran}");
    assert_eq!(
        builds[0].matches(".drv").count(),
        PROFILES.len(),
        "{}",
        builds[0]
    );
    let mut first_ids: Vec<String> = PROFILES
        .iter()
        .map(|p| text(entry(&first, p), "image_id").to_string())
        .collect();
    first_ids.sort();

    // Second night, same flake: every profile unchanged, nothing built, nothing sent.
    let (ran, second) = s.run(&flake, &[], true);
    for profile in PROFILES {
        let (a, b) = (entry(&first, profile), entry(&second, profile));
        assert_eq!(text(b, "status"), "unchanged", "{profile}\n{ran}");
        assert_eq!(number(b, "bytes_sent"), 0, "{profile}\n{ran}");
        assert_eq!(stage_status(b, "skip-unchanged"), "ok", "{profile}\n{ran}");
        for stage in ["build", "tag", "verify", "upload"] {
            assert_eq!(
                stage_status(b, stage),
                "skipped",
                "{profile}: {stage}\n{ran}"
            );
        }
        assert_eq!(
            text(b, "image_id"),
            text(a, "image_id"),
            "{profile}: the report names the current image\n{ran}"
        );
        let current = cloud::image("local", text(a, "image_id"));
        assert_current(&current, &s.stable(profile));
        assert_eq!(
            current.property("hephaestus_store_path"),
            a["store_path"].as_str(),
            "{}",
            cloud::describe(&current)
        );
    }
    let evals = nix_runs(&ran.stderr, "eval");
    assert_eq!(
        evals.len(),
        1,
        "one `nix eval` for all profiles: {evals:#?}\n{ran}"
    );
    assert_eq!(
        nix_runs(&ran.stderr, "build"),
        Vec::<&str>::new(),
        "an unchanged night builds nothing\n{ran}"
    );
    assert_eq!(
        s.image_ids(),
        first_ids,
        "an unchanged night created images"
    );

    // The flake changed: those profiles are rebuilt and published; the old images are kept.
    let changed = s.changed_flake("it-nightly-changed");
    let some = ["lucy", "sunraku"];
    let (ran, third) = s.run(&changed, &some, false);
    for profile in some {
        let (a, c) = (entry(&first, profile), entry(&third, profile));
        assert_eq!(text(c, "status"), "published", "{profile}\n{ran}");
        assert_eq!(stage_status(c, "build"), "ok", "{profile}\n{ran}");
        assert_eq!(number(c, "bytes_sent"), number(c, "size"), "{profile}");
        assert_ne!(c["store_path"], a["store_path"], "{profile}\n{ran}");
        assert_ne!(text(c, "image_id"), text(a, "image_id"), "{profile}\n{ran}");
        let current = cloud::image("local", text(c, "image_id"));
        assert_current(&current, &s.stable(profile));
        assert_eq!(
            current.property("hephaestus_store_path"),
            c["store_path"].as_str()
        );
        let old = cloud::image("local", text(a, "image_id"));
        assert!(
            old.os_hidden && has(&old, "previous"),
            "{}",
            cloud::describe(&old)
        );
    }
    assert_eq!(s.image_ids().len(), PROFILES.len() + some.len());

    // And the changed flake, run again, is unchanged in turn.
    let (ran, fourth) = s.run(&changed, &some, false);
    for profile in some {
        let e = entry(&fourth, profile);
        assert_eq!(text(e, "status"), "unchanged", "{profile}\n{ran}");
        assert_eq!(
            text(e, "image_id"),
            text(entry(&third, profile), "image_id")
        );
    }
}

#[test]
fn run_lock_held_by_another_run_refuses_with_lock_timeout_0_then_runs_once_free() {
    let _cloud = cloud::shared();
    let s = Nightly::new("lock");
    let flake = fixture_flake();

    // Another run publishing into `local` from this run directory: we hold its lock.
    let locks = s.run_dir().join("locks");
    std::fs::create_dir_all(&locks).expect("mkdir locks");
    let lock_path = locks.join("local.lock");
    let held = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .expect("open the lock file");
    held.try_lock()
        .expect("the lock file is free before the test");

    let mut cmd = s.command(&flake, &["lucy"], false, &["--lock-timeout", "0"]);
    // Not a timing assertion: only a guard so that a run waiting for the lock despite
    // `--lock-timeout 0` fails the test instead of hanging it.
    let refused = Background::spawn(&mut cmd, s.dir.path()).finish(
        Duration::from_secs(300),
        "the run still waited for the lock despite --lock-timeout 0",
    );
    assert_eq!(
        refused.code, 4,
        "a run that cannot take the lock exits 4 (busy)\n{refused}"
    );
    refused
        .stderr_has("another pipeline process is changing images in cloud `local`")
        .stderr_has(&lock_path.display().to_string());
    assert!(
        refused.stdout.trim().is_empty() && !refused.stderr.contains("lucy: "),
        "no stage ran\n{refused}"
    );
    assert_eq!(
        s.image_ids(),
        Vec::<String>::new(),
        "a run refused by the lock created images"
    );

    // The other run ended: the lock is free and the run goes ahead.
    held.unlock().expect("unlock");
    drop(held);
    let (ran, report) = s.run(&flake, &["lucy"], false);
    let e = entry(&report, "lucy");
    assert_eq!(text(e, "status"), "published", "{ran}");
    assert_eq!(s.image_ids(), vec![text(e, "image_id").to_string()]);
    assert!(lock_path.exists(), "the lock file stays for the next run");
}

#[test]
fn after_a_rollback_the_nightly_holds_the_rolled_back_build_and_publishes_a_new_one() {
    let _cloud = cloud::shared();
    let s = Nightly::new("held");
    let flake = fixture_flake();
    let changed = s.changed_flake("it-nightly-changed");
    let lucy = ["lucy"];
    let (_, first) = s.run(&flake, &lucy, false);
    let (_, second) = s.run(&changed, &lucy, false);
    let (g1, g2) = (
        text(entry(&first, "lucy"), "image_id").to_string(),
        text(entry(&second, "lucy"), "image_id").to_string(),
    );
    let template = format!("{}-{{profile}}", s.prefix);
    util::run_std(
        util::cloud_pipeline(&cloud::clouds_yaml())
            .args(["rollback", "lucy", "--cloud", "local", "--name", &template])
            .env("HEPHAESTUS_RUN_DIR", s.run_dir()),
    )
    .expect_code(0);
    assert_current(&cloud::image("local", &g1), &s.stable("lucy"));

    // The flake still gives g2's build: held before anything is built, nothing sent.
    let (ran, third) = s.run(&changed, &lucy, true);
    let e = entry(&third, "lucy");
    assert_eq!(text(e, "status"), "held", "{ran}");
    assert_eq!(number(e, "bytes_sent"), 0, "{ran}");
    assert_eq!(stage_status(e, "build"), "skipped", "{ran}");
    assert!(text(e, "held").contains(&g2), "{ran}");
    assert_eq!(
        nix_runs(&ran.stderr, "build"),
        Vec::<&str>::new(),
        "a held night builds nothing\n{ran}"
    );
    assert_current(&cloud::image("local", &g1), &s.stable("lucy"));

    // A new build is published as usual.
    let fixed = s.changed_flake("it-nightly-held-fix");
    let (ran, fourth) = s.run(&fixed, &lucy, false);
    let e = entry(&fourth, "lucy");
    assert_eq!(text(e, "status"), "published", "{ran}");
    assert_current(
        &cloud::image("local", text(e, "image_id")),
        &s.stable("lucy"),
    );
    let check = util::run_std(util::cloud_pipeline(&cloud::clouds_yaml()).args([
        "check",
        "--cloud",
        "local",
        "--profile",
        "lucy",
        "--name",
        &template,
    ]));
    check
        .expect_code(0)
        .stderr_has("every image family is sound");
}
