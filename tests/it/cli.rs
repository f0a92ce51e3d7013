//! The command line as a release engineer meets it: listing, validation errors for bad input,
//! plans with the firmware rule applied, and dry-run reports.

use crate::util::{bounded, bounded_pipeline, pipeline, project, repo, run, BAD_INPUT_MEMORY};
use serde_json::Value;

/// Every bad input: (fixtures/bad/<case>, file named in the error, line, part of the message).
const BAD: &[(&str, &str, u32, &str)] = &[
    (
        "yaml-syntax",
        "pipelines/publish-all.yaml",
        3,
        "publish-all.yaml:3:",
    ),
    (
        "unknown-key",
        "pipelines/publish-all.yaml",
        3,
        "unknown field `concurency`",
    ),
    ("wrong-type", "pipelines/publish-all.yaml", 3, "invalid"),
    (
        "unknown-stage",
        "pipelines/publish-all.yaml",
        5,
        "unknown stage `biuld`",
    ),
    (
        "unknown-profile",
        "pipelines/publish-all.yaml",
        2,
        "unknown profile `lucky`",
    ),
    (
        "duplicate-profile",
        "pipelines/publish-all.yaml",
        5,
        "profile `lucy` is listed twice",
    ),
    (
        "upload-without-verify",
        "pipelines/publish-all.yaml",
        7,
        "`upload` needs `verify` before it",
    ),
    (
        "empty-stages",
        "pipelines/publish-all.yaml",
        3,
        "the stage list is empty",
    ),
    (
        "bios-not-allowed",
        "profiles/lucy.yaml",
        4,
        "asks for legacy BIOS boot",
    ),
    (
        "name-mismatch",
        "profiles/makise.yaml",
        1,
        "differs from its file name",
    ),
    (
        "firmware-override",
        "profiles/quinn.yaml",
        7,
        "would override a firmware key",
    ),
    (
        "machine-type-override",
        "profiles/generic.yaml",
        6,
        "`hw_machine_type` would override a firmware key",
    ),
    (
        "profile-unknown-key",
        "profiles/generic.yaml",
        4,
        "unknown field `bootmode`",
    ),
    ("profile-bad-boot", "profiles/generic.yaml", 4, "legacy"),
    (
        "stage-needs-build",
        "pipelines/publish-all.yaml",
        5,
        "`tag` needs `build` before it",
    ),
    (
        "options-on-plain-stage",
        "pipelines/publish-all.yaml",
        6,
        "stage `verify` takes no options",
    ),
    (
        "unknown-upload-option",
        "pipelines/publish-all.yaml",
        9,
        "unknown field `methd`",
    ),
    (
        "duplicate-stage",
        "pipelines/publish-all.yaml",
        6,
        "stage `build` is listed twice",
    ),
    (
        "concurrency-zero",
        "pipelines/publish-all.yaml",
        3,
        "concurrency is 0",
    ),
    (
        "missing-stages",
        "pipelines/publish-all.yaml",
        3,
        "missing field `stages`",
    ),
    (
        "lifecycle-tag",
        "profiles/generic.yaml",
        5,
        "tag `current` is managed by the pipeline",
    ),
    (
        "policy-unknown-key",
        "profiles/policy.yaml",
        1,
        "unknown field `legacy_bois`",
    ),
    (
        "unknown-visibility",
        "pipelines/publish-all.yaml",
        8,
        "unknown visibility",
    ),
    (
        "members-without-shared",
        "pipelines/publish-all.yaml",
        9,
        "only a shared image has members",
    ),
    (
        "member-not-a-project",
        "pipelines/publish-all.yaml",
        9,
        "is not a project id",
    ),
    (
        "bad-boot-marker",
        "pipelines/publish-all.yaml",
        8,
        "marker is not a valid regex",
    ),
    (
        "promote-without-source",
        "pipelines/promote.yaml",
        5,
        "`promote` needs the cloud to copy from",
    ),
    (
        "unsafe-profile-file-name",
        "profiles/a.b.yaml",
        0,
        "`.` is not allowed",
    ),
    (
        "attribute-injection",
        "profiles/lucy.yaml",
        0,
        "not a safe flake attribute path",
    ),
    (
        "attribute-quote",
        "profiles/lucy.yaml",
        0,
        "`\"` is not allowed",
    ),
    (
        "unsafe-pipeline-name",
        "pipelines/publish-all.yaml",
        1,
        "pipeline name",
    ),
    (
        "unsafe-image-name",
        "pipelines/publish-all.yaml",
        9,
        "unsafe image name",
    ),
    (
        "upload-without-boot-check",
        "pipelines/publish-all.yaml",
        8,
        "`upload` needs `boot-check` before it",
    ),
    (
        "marker-with-config-drive",
        "pipelines/publish-all.yaml",
        8,
        "with `metadata: config-drive` (the default of a publishing pipeline) the marker is",
    ),
    (
        "boot-check-skip-without-reason",
        "pipelines/publish-all.yaml",
        8,
        "needs a reason",
    ),
    (
        "keep-tag",
        "profiles/generic.yaml",
        5,
        "tag `keep` is managed by the pipeline's image lifecycle",
    ),
    (
        "reserved-property",
        "profiles/generic.yaml",
        6,
        "property `hephaestus_generation` is computed",
    ),
    (
        "scs-bad-purpose",
        "profiles/lucy.yaml",
        6,
        "os_purpose `k8snode` is not allowed by SCS-0102",
    ),
    (
        "profile-tag-prefix",
        "profiles/generic.yaml",
        5,
        "tag `profile:lucy`",
    ),
];

#[test]
fn every_bad_input_is_a_clear_error_with_exit_2() {
    for (case, file, line, message) in BAD {
        let root = project(Some(case));
        // A bound, not a measurement: a hang is killed at 10 s, and an allocation past
        // 256 MiB fails and aborts the tool; either misses exit 2.
        let ran = run(bounded_pipeline(root.path()).arg("validate"));
        // Line 0: the problem concerns the whole file.
        let at = if *line == 0 {
            format!("{file}: ")
        } else {
            format!("{file}:{line}:")
        };
        ran.expect_code(2)
            .stderr_has(&at)
            .stderr_has(message)
            .stderr_has("fix: ");
    }
}

/// The memory half of the bad-input bound is real on this kernel (RLIMIT_DATA covers
/// anonymous mappings since Linux 4.7, so a large allocation fails instead of succeeding):
/// without it the corpus tests would bound time only.
#[test]
fn the_bad_input_memory_bound_stops_a_big_allocation_and_allows_a_small_one() {
    let allocate = |mib: u64| {
        let mut cmd = bounded("perl", BAD_INPUT_MEMORY);
        cmd.args([
            "-e",
            &format!("my $x = 'a' x ({mib} << 20); print length $x"),
        ]);
        run(&mut cmd)
    };
    let small = allocate(64);
    small.expect_code(0);
    assert_eq!(small.stdout, (64u64 << 20).to_string(), "{small}");
    let big = allocate(512);
    assert_ne!(big.code, 0, "512 MiB were allocated under the bound\n{big}");
    assert!(big.stderr.contains("Out of memory"), "{big}");
}

#[test]
fn a_profile_that_is_a_device_is_refused_without_reading_it() {
    // profiles/zero.yaml is a symlink to /dev/zero: read, it would never end.
    let root = project(Some("profile-is-dev-zero"));
    let ran = run(bounded_pipeline(root.path()).arg("validate"));
    ran.expect_code(2)
        .stderr_has("profiles/zero.yaml is not a regular file (it is a character device)");
}

#[test]
fn bad_fixtures_are_all_covered() {
    let dirs = std::fs::read_dir(repo().join("fixtures/bad")).expect("fixtures/bad");
    for d in dirs {
        let name = d.expect("entry").file_name().to_string_lossy().into_owned();
        assert!(
            name == "many-problems"
                || name == "profile-is-dev-zero"
                || name == "clouds-yaml"
                || BAD.iter().any(|(case, ..)| *case == name),
            "fixtures/bad/{name} has no expectation in tests/it/cli.rs"
        );
    }
}

#[test]
fn all_problems_of_a_run_are_reported_not_only_the_first() {
    let root = project(Some("many-problems"));
    let ran = run(bounded_pipeline(root.path()).args(["validate", "--json"]));
    ran.expect_code(2);
    let doc: Value = serde_json::from_str(&ran.stdout).expect("validate --json prints JSON");
    let problems = doc["problems"].as_array().expect("problems");
    let messages: Vec<String> = problems
        .iter()
        .map(|p| {
            format!(
                "{}:{} {}",
                p["file"].as_str().unwrap_or(""),
                p["line"],
                p["message"].as_str().unwrap_or("")
            )
        })
        .collect();
    for needle in [
        "profiles/lucy.yaml:4 profile `lucy` asks for legacy BIOS",
        "pipelines/publish-all.yaml:2 unknown profile `lucky`",
        "pipelines/publish-all.yaml:2 profile `lucy` is listed twice",
        "pipelines/publish-all.yaml:5 unknown stage `verfy`",
        "pipelines/publish-all.yaml:6 `upload` needs `tag` before it",
        "pipelines/publish-all.yaml:6 `upload` needs `verify` before it",
    ] {
        assert!(
            messages.iter().any(|m| m.starts_with(needle)),
            "missing {needle:?} in {messages:#?}"
        );
    }
}

#[test]
fn shipped_pipelines_and_profiles_validate() {
    run(pipeline(&repo()).arg("validate"))
        .expect_code(0)
        .stderr_has("ok: ");
}

#[test]
fn list_shows_pipelines_and_boot_modes() {
    let ran = run(pipeline(&repo()).args(["list", "--json"]));
    ran.expect_code(0);
    let doc: Value = serde_json::from_str(&ran.stdout).expect("list --json prints JSON");
    let boot_of = |name: &str| {
        doc["profiles"]
            .as_array()
            .and_then(|ps| ps.iter().find(|p| p["name"] == name))
            .map(|p| p["boot"].clone())
    };
    assert_eq!(boot_of("sunraku"), Some(Value::from("bios")));
    for uefi in ["lucy", "makise", "quinn", "generic"] {
        assert_eq!(boot_of(uefi), Some(Value::from("uefi")), "{uefi}");
    }
    let names: Vec<&str> = doc["pipelines"]
        .as_array()
        .expect("pipelines")
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    assert!(
        names.contains(&"publish-all") && names.contains(&"nightly"),
        "{names:?}"
    );
}

#[test]
fn plan_applies_the_firmware_rule() {
    let ran = run(pipeline(&repo()).args(["plan", "publish-all", "--json"]));
    ran.expect_code(0);
    let doc: Value = serde_json::from_str(&ran.stdout).expect("plan --json prints JSON");
    let profiles = doc["profiles"].as_array().expect("profiles");
    assert_eq!(profiles.len(), 5);
    for p in profiles {
        let props = &p["properties"];
        match p["profile"].as_str() {
            Some("sunraku") => {
                assert_eq!(props["hw_firmware_type"], "bios");
                assert!(props.get("hw_machine_type").is_none(), "{p}");
            }
            Some(_) => {
                assert_eq!(props["hw_firmware_type"], "uefi", "{p}");
                assert_eq!(props["hw_machine_type"], "q35", "{p}");
            }
            None => panic!("profile without name: {p}"),
        }
        assert_eq!(props["os_distro"], "nixos");
        assert!(p["tags"]
            .as_array()
            .expect("tags")
            .contains(&Value::from("hephaestus")));
    }
    // The human plan says the same on stderr.
    let text = run(pipeline(&repo()).args(["plan", "publish-all", "--profile", "sunraku"]));
    text.expect_code(0).stderr_has("hw_firmware_type=bios");
}

#[test]
fn plan_and_dry_run_say_which_boot_check_runs() {
    // publish-all uploads, so its boot check attaches a config drive without being told.
    let ran = run(pipeline(&repo()).args(["plan", "publish-all", "--json"]));
    ran.expect_code(0);
    let doc: Value = serde_json::from_str(&ran.stdout).expect("plan --json prints JSON");
    assert_eq!(doc["boot_check_metadata"], "config-drive", "{doc:#}");
    run(pipeline(&repo()).args(["plan", "publish-all"]))
        .expect_code(0)
        .stderr_has("boot-check: metadata: config-drive: each image boots with a fresh config drive and must print `<its random host name> login:`");
    let dry = run(pipeline(&repo()).args(["run", "publish-all", "--dry-run", "--profile", "lucy"]));
    dry.expect_code(0).stderr_has("metadata: config-drive");

    // A pipeline that does not publish boots without metadata unless it asks for a drive.
    let root = project(None);
    let pipelines = root.path().join("pipelines");
    let boot_only =
        "name: boot-only\nprofiles: all\nstages: [evaluate, build, tag, verify, boot-check]\n";
    std::fs::write(pipelines.join("boot-only.yaml"), boot_only).expect("write");
    let ran = run(pipeline(root.path()).args(["plan", "boot-only", "--json"]));
    ran.expect_code(0);
    let doc: Value = serde_json::from_str(&ran.stdout).expect("plan --json prints JSON");
    assert_eq!(doc["boot_check_metadata"], "none", "{doc:#}");
    let asked = boot_only.replace("boot-check]", "{boot-check: {metadata: config-drive}}]");
    std::fs::write(pipelines.join("boot-only.yaml"), asked).expect("write");
    let ran = run(pipeline(root.path()).args(["plan", "boot-only"]));
    ran.expect_code(0)
        .stderr_has("boot-check: metadata: config-drive");
    let wrong = boot_only.replace("boot-check]", "{boot-check: {metadata: floppy}}]");
    std::fs::write(pipelines.join("boot-only.yaml"), wrong).expect("write");
    run(pipeline(root.path()).args(["validate", "boot-only"])).expect_code(2);
}

#[test]
fn dry_run_report_lists_the_five_profiles() {
    let dir = tempfile::tempdir().expect("tempdir");
    let report_file = dir.path().join("report.json");
    let ran = run(pipeline(&repo())
        .args(["run", "publish-all", "--dry-run", "--json", "--report"])
        .arg(&report_file));
    ran.expect_code(0);
    let doc: Value =
        serde_json::from_str(&ran.stdout).expect("run --json prints exactly one JSON document");
    let from_file: Value =
        serde_json::from_str(&std::fs::read_to_string(&report_file).expect("report file"))
            .expect("report JSON");
    assert_eq!(doc, from_file);
    assert_eq!(doc["pipeline"], "publish-all");
    assert_eq!(doc["dry_run"], true);
    let images = doc["images"].as_array().expect("images");
    let mut names: Vec<&str> = images
        .iter()
        .filter_map(|i| i["profile"].as_str())
        .collect();
    names.sort();
    assert_eq!(names, ["generic", "lucy", "makise", "quinn", "sunraku"]);
    for image in images {
        assert_eq!(image["status"], "planned", "{image}");
        let stages: Vec<&str> = image["stages"]
            .as_array()
            .expect("stages")
            .iter()
            .filter_map(|s| s["stage"].as_str())
            .collect();
        assert_eq!(
            stages,
            ["evaluate", "build", "tag", "verify", "boot-check", "upload"]
        );
    }
}

#[test]
fn unknown_pipeline_names_the_known_ones() {
    run(pipeline(&repo()).args(["plan", "publish-everything"]))
        .expect_code(2)
        .stderr_has("no pipeline `publish-everything`")
        .stderr_has("publish-all");
}

#[test]
fn profile_filter_must_name_a_profile_of_the_pipeline() {
    run(pipeline(&repo()).args(["plan", "publish-all", "--profile", "lucky"]))
        .expect_code(2)
        .stderr_has("--profile lucky: no such profile");
}

#[test]
fn help_teaches_with_examples() {
    for sub in subcommands_in_help() {
        let ran = run(pipeline(&repo()).args([sub.as_str(), "--help"]));
        ran.expect_code(0);
        assert!(
            ran.stdout.contains("Example"),
            "`pipeline {sub} --help` has no example:\n{}",
            ran.stdout
        );
    }
}

#[test]
fn usage_errors_exit_2() {
    run(pipeline(&repo()).args(["run"])).expect_code(2);
    run(pipeline(&repo()).args(["frobnicate"])).expect_code(2);
}

/// Every bad clouds.yaml under fixtures/bad/clouds-yaml: (file, part of the message). Each
/// is a configuration error (exit 2) that names the file and never shows the password.
const BAD_CLOUDS: &[(&str, &str)] = &[
    (
        "yaml-error-on-password.yaml",
        "yaml-error-on-password.yaml:6:",
    ),
    ("numeric-password.yaml", "auth.password must be a string"),
    ("list-password.yaml", "auth.password must be a string"),
    (
        "no-clouds-mapping.yaml",
        "not a clouds.yaml with a `clouds` mapping",
    ),
    (
        "bad-endpoint-override.yaml",
        "image_endpoint_override `ftp://somewhere` is not an http(s) URL",
    ),
    (
        "bad-api-timeout.yaml",
        "api_timeout must be a positive number of seconds",
    ),
    (
        "other-cloud-only.yaml",
        "no cloud named local (it has: elsewhere)",
    ),
];

#[test]
fn every_bad_clouds_yaml_is_a_configuration_error_that_shows_no_secret() {
    let dir = repo().join("fixtures/bad/clouds-yaml");
    let files = std::fs::read_dir(&dir)
        .expect("fixtures/bad/clouds-yaml")
        .count();
    assert_eq!(files, BAD_CLOUDS.len(), "every file has an expectation");
    let root = project(None);
    for (file, message) in BAD_CLOUDS {
        for args in [
            &["images", "--cloud", "local"][..],
            &["-vv", "prune", "--cloud", "local"][..],
            &["--log-format", "json", "-vv", "prune", "--cloud", "local"][..],
        ] {
            // Under the same 10 s and 256 MiB bound as every other bad input.
            let mut cmd = bounded_pipeline(root.path());
            cmd.args(args)
                .env("OS_CLIENT_CONFIG_FILE", dir.join(file))
                .env("RUST_LOG", "trace");
            let ran = run(&mut cmd);
            ran.expect_code(2).stderr_has(message);
            for secret in ["canary-s3cret", "987654321"] {
                assert!(
                    !ran.stderr.contains(secret) && !ran.stdout.contains(secret),
                    "{file}: the secret leaks\n{ran}"
                );
            }
        }
    }
}

/// The subcommands as `pipeline --help` lists them (`help` aside).
fn subcommands_in_help() -> Vec<String> {
    let ran = run(pipeline(&repo()).arg("--help"));
    ran.expect_code(0);
    let listed: Vec<String> = ran
        .stdout
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| !l.is_empty())
        .filter(|l| l.starts_with("  ") && !l.starts_with("   "))
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .filter(|name| name != "help")
        .collect();
    assert!(
        listed.len() >= 15,
        "subcommands in --help: {listed:?}\n{ran}"
    );
    listed
}

/// What bash's completion of `words` (the last one being completed) offers, after loading
/// `pipeline --root ROOT completions bash` the way a user's ~/.bashrc does, and calling the
/// function that `complete -p pipeline` names, as bash does on TAB.
fn bash_completes(root: &std::path::Path, words: &[&str]) -> Vec<String> {
    const SCRIPT: &str = r#"
source <("$PIPELINE" --root "$ROOT" completions bash) || exit 3
spec=$(complete -p pipeline) || exit 4
fn=$(sed -n 's/.* -F \([^ ]*\) .*/\1/p' <<<"$spec")
[ -n "$fn" ] || exit 5
COMP_WORDS=("$@")
COMP_CWORD=$(( $# - 1 ))
COMP_LINE="$*"
COMP_POINT=${#COMP_LINE}
"$fn" pipeline "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD-1]}"
printf '%s\n' "${COMPREPLY[@]}"
"#;
    let mut cmd = std::process::Command::new("bash");
    cmd.arg("-c")
        .arg(SCRIPT)
        .arg("bash")
        .args(words)
        .env("PIPELINE", assert_cmd::cargo::cargo_bin("pipeline"))
        .env("ROOT", root)
        .current_dir(root);
    let ran = crate::util::run_std(&mut cmd);
    ran.expect_code(0);
    ran.stdout
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

#[test]
fn bash_completion_loads_and_completes_subcommands_pipelines_and_profiles() {
    let root = project(None);
    let offered = bash_completes(root.path(), &["pipeline", "r"]);
    for expected in ["run", "rollback", "release"] {
        assert!(offered.contains(&expected.to_string()), "{offered:?}");
    }
    assert!(!offered.contains(&"list".to_string()), "{offered:?}");

    let offered = bash_completes(root.path(), &["pipeline", ""]);
    for subcommand in subcommands_in_help() {
        assert!(offered.contains(&subcommand), "{subcommand}: {offered:?}");
    }

    assert_eq!(
        bash_completes(root.path(), &["pipeline", "run", "pub"]),
        ["publish-all"]
    );
    let offered = bash_completes(root.path(), &["pipeline", "plan", ""]);
    for name in ["nightly", "promote", "publish-all", "verify-all"] {
        assert!(offered.contains(&name.to_string()), "{name}: {offered:?}");
    }
    let profiles = ["generic", "lucy", "makise", "quinn", "sunraku"];
    assert_eq!(
        bash_completes(
            root.path(),
            &["pipeline", "run", "publish-all", "--profile", ""]
        ),
        profiles
    );
    assert_eq!(
        bash_completes(root.path(), &["pipeline", "rollback", ""])
            .into_iter()
            .filter(|w| !w.starts_with('-'))
            .collect::<Vec<_>>(),
        profiles
    );
    assert_eq!(
        bash_completes(root.path(), &["pipeline", "schema", "p"]),
        ["pipeline", "profile", "policy"]
    );
    assert_eq!(
        bash_completes(root.path(), &["pipeline", "completions", "f"]),
        ["fish"]
    );
}

#[test]
fn completion_without_a_project_still_completes_subcommands() {
    let empty = tempfile::tempdir().expect("tempdir");
    let offered = bash_completes(empty.path(), &["pipeline", "r"]);
    assert!(offered.contains(&"run".to_string()), "{offered:?}");
    let offered = bash_completes(empty.path(), &["pipeline", "run", ""]);
    assert!(!offered.contains(&"publish-all".to_string()), "{offered:?}");
}

#[test]
fn zsh_and_fish_completion_scripts_cover_every_subcommand() {
    let subcommands = subcommands_in_help();
    // clap_complete's fish script completes option values but no positional values, so
    // fish offers profile names (--profile) and not pipeline names.
    for (shell, header, names) in [
        (
            "zsh",
            "#compdef pipeline",
            &["(nightly promote publish-all verify-all)", "lucy"][..],
        ),
        ("fish", "complete -c pipeline", &["lucy\\t"][..]),
    ] {
        let ran = run(pipeline(&repo()).args(["completions", shell]));
        ran.expect_code(0);
        assert!(ran.stdout.contains(header), "{shell}\n{ran}");
        for subcommand in &subcommands {
            assert!(
                ran.stdout.contains(subcommand.as_str()),
                "{shell}: {subcommand}"
            );
        }
        for name in names {
            assert!(ran.stdout.contains(name), "{shell}: {name}");
        }
    }
}

#[test]
fn man_pages_name_every_subcommand_and_their_options() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ran = run(pipeline(&repo()).args(["man", "--out-dir"]).arg(dir.path()));
    ran.expect_code(0);
    let main = std::fs::read_to_string(dir.path().join("pipeline.1")).expect("pipeline.1");
    assert!(main.contains(".TH pipeline 1"), "{main}");
    assert!(main.contains(".SH SUBCOMMANDS"), "{main}");
    for subcommand in subcommands_in_help() {
        let roff_name = subcommand.replace('-', "\\-");
        assert!(
            main.contains(&format!("pipeline\\-{roff_name}(1)")),
            "pipeline.1 lacks {subcommand}"
        );
        let page = dir.path().join(format!("pipeline-{subcommand}.1"));
        assert!(page.is_file(), "no page {}", page.display());
    }
    let run_page =
        std::fs::read_to_string(dir.path().join("pipeline-run.1")).expect("pipeline-run.1");
    for option in ["\\-\\-dry\\-run", "\\-\\-report", "\\-\\-lock\\-timeout"] {
        assert!(run_page.contains(option), "pipeline-run.1 lacks {option}");
    }
    assert!(
        run_page.contains("pipeline run publish\\-all \\-\\-dry\\-run"),
        "pipeline-run.1 lacks the examples of --help"
    );

    let ran = run(pipeline(&repo()).arg("man"));
    ran.expect_code(0);
    assert_eq!(ran.stdout, main, "`pipeline man` prints pipeline(1)");
}

/// Every line of `stderr`, parsed; panics on a line that is not one JSON object with a
/// timestamp, a level and a message.
fn json_lines(ran: &crate::util::Ran) -> Vec<Value> {
    let events: Vec<Value> = ran
        .stderr
        .lines()
        .map(|line| {
            let event: Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("a stderr line is not JSON ({e}): {line}\n{ran}"));
            for field in ["timestamp", "level", "message"] {
                assert!(event[field].is_string(), "no {field}: {line}\n{ran}");
            }
            event
        })
        .collect();
    assert!(!events.is_empty(), "nothing on stderr\n{ran}");
    events
}

#[test]
fn json_logs_put_one_json_object_per_line_on_stderr() {
    let root = project(None);
    let ran = run(pipeline(root.path()).args([
        "--log-format",
        "json",
        "-v",
        "run",
        "verify-all",
        "--dry-run",
    ]));
    ran.expect_code(0);
    assert!(ran.stdout.is_empty(), "stdout stays for --json\n{ran}");
    let events = json_lines(&ran);
    assert!(
        events
            .iter()
            .any(|e| e["target"] == "hephaestus::pipeline::runner"
                && e["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("lucy: tag ok"))),
        "the runner's log events\n{ran}"
    );
    assert!(
        events.iter().any(|e| e["level"] == "INFO"
            && e["message"]
                .as_str()
                .is_some_and(|m| m.contains("verify-all: 5 image(s), 0 failed"))),
        "the report is an event too\n{ran}"
    );

    // --json keeps stdout for its one document.
    let ran = run(pipeline(root.path()).args([
        "--log-format",
        "json",
        "run",
        "verify-all",
        "--dry-run",
        "--json",
    ]));
    ran.expect_code(0);
    json_lines(&ran);
    let report: Value = serde_json::from_str(&ran.stdout).expect("one JSON document on stdout");
    assert_eq!(report["pipeline"], "verify-all", "{ran}");

    // The error that ends a command is an ERROR event, even with RUST_LOG turned down.
    let bad = project(Some("unknown-key"));
    let mut cmd = pipeline(bad.path());
    cmd.args(["validate"])
        .env("HEPHAESTUS_LOG_FORMAT", "json")
        .env("RUST_LOG", "off");
    let ran = run(&mut cmd);
    ran.expect_code(2);
    let events = json_lines(&ran);
    assert!(
        events.iter().any(|e| e["level"] == "ERROR"
            && e["message"]
                .as_str()
                .is_some_and(|m| m.contains("unknown field `concurency`"))),
        "{ran}"
    );

    // Arguments clap refuses are reported before the format is known: as text, exit 2.
    let ran = run(pipeline(root.path()).args(["--log-format", "json", "frobnicate"]));
    ran.expect_code(2);
    assert!(ran.stderr.starts_with("error:"), "{ran}");
}

#[test]
fn text_stays_the_default_log_format() {
    let root = project(None);
    let ran = run(pipeline(root.path()).args(["-v", "run", "verify-all", "--dry-run"]));
    ran.expect_code(0);
    assert!(
        ran.stderr
            .starts_with("verify-all: 5 profile(s), stages evaluate"),
        "{ran}"
    );
    assert!(!ran.stderr.lines().any(|l| l.starts_with('{')), "{ran}");
}
