//! The JSON Schema of the YAML files as an editor and another checker see it: the checked-in
//! schemas are what the types generate, every shipped file names its schema and passes it
//! under Python's `jsonschema` (an independent validator, from the harness venv), and the
//! schema refuses every bad input that is wrong in shape, which `BAD_CASES` lists one by one.

use crate::util::{pipeline, repo, run, run_std};
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

const KINDS: [&str; 3] = ["pipeline", "profile", "policy"];

/// What the schema must say about a bad input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// Wrong in shape (a wrong type, an unknown key or stage, a missing required key, a value
    /// outside an enum): the schema refuses it.
    Structural,
    /// Breaks a rule on a single value that the schema carries too (a name pattern, a
    /// minimum, a non-empty list, no duplicates): refused as well.
    Value,
    /// Breaks a rule the schema cannot see (other files, stage order, reserved keys,
    /// regex syntax): the schema accepts it and `pipeline validate` refuses it. The text says
    /// which rule.
    Semantic(&'static str),
    /// Not YAML at all.
    NotYaml,
}

use Expect::{NotYaml, Semantic, Structural, Value as ValueRule};

/// Every pipeline, profile and policy file under fixtures/bad/ (clouds.yaml cases are not
/// ours to describe, and `profile-is-dev-zero` is a device, never read).
const BAD_CASES: &[(&str, Expect)] = &[
    ("attribute-injection/profiles/lucy.yaml", ValueRule),
    ("attribute-quote/profiles/lucy.yaml", ValueRule),
    (
        "bad-boot-marker/pipelines/publish-all.yaml",
        Semantic("the marker must compile as a regex"),
    ),
    (
        "bios-not-allowed/profiles/lucy.yaml",
        Semantic("the firmware policy is another file"),
    ),
    (
        "boot-check-skip-without-reason/pipelines/publish-all.yaml",
        ValueRule,
    ),
    ("concurrency-zero/pipelines/publish-all.yaml", ValueRule),
    ("duplicate-profile/pipelines/publish-all.yaml", ValueRule),
    (
        "duplicate-stage/pipelines/publish-all.yaml",
        Semantic("`build` and `build: {…}` are the same stage"),
    ),
    ("empty-stages/pipelines/publish-all.yaml", ValueRule),
    (
        "firmware-override/profiles/quinn.yaml",
        Semantic("reserved property keys are the lifecycle's rule"),
    ),
    (
        "keep-tag/profiles/generic.yaml",
        Semantic("reserved tags are the lifecycle's rule"),
    ),
    (
        "lifecycle-tag/profiles/generic.yaml",
        Semantic("reserved tags are the lifecycle's rule"),
    ),
    (
        "machine-type-override/profiles/generic.yaml",
        Semantic("reserved property keys are the lifecycle's rule"),
    ),
    ("many-problems/pipelines/publish-all.yaml", Structural),
    (
        "many-problems/profiles/lucy.yaml",
        Semantic("the firmware policy is another file"),
    ),
    ("missing-stages/pipelines/publish-all.yaml", Structural),
    (
        "name-mismatch/profiles/makise.yaml",
        Semantic("the name must equal the file name"),
    ),
    (
        "options-on-plain-stage/pipelines/publish-all.yaml",
        Structural,
    ),
    ("policy-unknown-key/profiles/policy.yaml", Structural),
    ("profile-bad-boot/profiles/generic.yaml", Structural),
    (
        "profile-tag-prefix/profiles/generic.yaml",
        Semantic("reserved tags are the lifecycle's rule"),
    ),
    ("profile-unknown-key/profiles/generic.yaml", Structural),
    ("promote-without-source/pipelines/promote.yaml", Structural),
    (
        "reserved-property/profiles/generic.yaml",
        Semantic("reserved property keys are the lifecycle's rule"),
    ),
    ("scs-bad-purpose/profiles/lucy.yaml", Structural),
    (
        "stage-needs-build/pipelines/publish-all.yaml",
        Semantic("stage order"),
    ),
    ("unknown-key/pipelines/publish-all.yaml", Structural),
    (
        "unknown-profile/pipelines/publish-all.yaml",
        Semantic("profiles are other files"),
    ),
    ("unknown-stage/pipelines/publish-all.yaml", Structural),
    (
        "unknown-upload-option/pipelines/publish-all.yaml",
        Structural,
    ),
    ("unknown-visibility/pipelines/publish-all.yaml", Structural),
    (
        "marker-with-config-drive/pipelines/publish-all.yaml",
        Semantic("a marker depends on the metadata check"),
    ),
    (
        "members-without-shared/pipelines/publish-all.yaml",
        Semantic("members depend on the visibility"),
    ),
    (
        "member-not-a-project/pipelines/publish-all.yaml",
        Semantic("project ids are checked by validation only"),
    ),
    (
        "unsafe-image-name/pipelines/publish-all.yaml",
        Semantic("image-name templates are checked by validation only"),
    ),
    ("unsafe-pipeline-name/pipelines/publish-all.yaml", ValueRule),
    ("unsafe-profile-file-name/profiles/a.b.yaml", ValueRule),
    (
        "upload-without-boot-check/pipelines/publish-all.yaml",
        Semantic("stage order"),
    ),
    (
        "upload-without-verify/pipelines/publish-all.yaml",
        Semantic("stage order"),
    ),
    ("wrong-type/pipelines/publish-all.yaml", Structural),
    ("yaml-syntax/pipelines/publish-all.yaml", NotYaml),
];

/// The harness venv (`make install-deps` builds it), which has jsonschema and PyYAML.
pub(crate) fn harness_python() -> PathBuf {
    let venv = match std::env::var_os("CLOUD_VENV").filter(|v| !v.is_empty()) {
        Some(v) => PathBuf::from(v),
        None => {
            let out = Command::new("bash")
                .arg("-c")
                .arg(". scripts/cloud/common.sh && printf %s \"$VENV_DIR\"")
                .current_dir(repo())
                .output()
                .expect("run bash");
            assert!(out.status.success(), "scripts/cloud/common.sh failed");
            PathBuf::from(String::from_utf8(out.stdout).expect("utf-8 path"))
        }
    };
    assert!(
        venv.join(".complete").exists(),
        "the harness venv {} is not built: run `make install-deps` (or `make cloud-install`)",
        venv.display()
    );
    venv.join("bin/python")
}

/// Python's verdict on each file: `scripts/check-yaml-schema.py [--schema S] FILES`.
fn python_verdicts(schema: Option<&Path>, files: &[PathBuf]) -> Vec<Value> {
    let mut cmd = Command::new(harness_python());
    cmd.arg(repo().join("scripts/check-yaml-schema.py"));
    if let Some(schema) = schema {
        cmd.arg("--schema").arg(schema);
    }
    cmd.args(files).current_dir(repo());
    let ran = run_std(&mut cmd);
    ran.expect_code(0);
    let verdicts: Vec<Value> = ran
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}\n{ran}")))
        .collect();
    assert_eq!(verdicts.len(), files.len(), "one verdict per file\n{ran}");
    verdicts
}

fn shipped_yaml() -> Vec<(PathBuf, &'static str)> {
    let mut files = Vec::new();
    for (dir, kind) in [("pipelines", "pipeline"), ("profiles", "profile")] {
        for entry in std::fs::read_dir(repo().join(dir)).expect("read_dir") {
            let path = entry.expect("entry").path();
            if path.extension().is_some_and(|e| e == "yaml") {
                let kind = if path.file_name().is_some_and(|n| n == "policy.yaml") {
                    "policy"
                } else {
                    kind
                };
                files.push((path, kind));
            }
        }
    }
    files.sort();
    assert!(files.len() >= 10, "the shipped YAML files: {files:?}");
    files
}

#[test]
fn the_checked_in_schemas_are_what_the_types_generate() {
    for kind in KINDS {
        let ran = run(pipeline(&repo()).args(["schema", kind]));
        ran.expect_code(0);
        let file = repo().join("schemas").join(format!("{kind}.schema.json"));
        let checked_in = std::fs::read_to_string(&file)
            .unwrap_or_else(|e| panic!("{}: {e}: run `make schema`", file.display()));
        assert!(
            checked_in == ran.stdout,
            "{} differs from `pipeline schema {kind}`: run `make schema` and commit the result",
            file.display()
        );
        let schema: Value = serde_json::from_str(&checked_in).expect("the schema is JSON");
        assert_eq!(
            schema["$schema"], "https://json-schema.org/draft/2020-12/schema",
            "{kind}"
        );
    }
}

#[test]
fn every_shipped_yaml_file_names_its_schema_in_its_first_line() {
    for (path, kind) in shipped_yaml() {
        let text = std::fs::read_to_string(&path).expect("read");
        let first = text.lines().next().unwrap_or_default();
        assert_eq!(
            first,
            format!("# yaml-language-server: $schema=../schemas/{kind}.schema.json"),
            "{}",
            path.display()
        );
    }
}

#[test]
fn every_shipped_yaml_file_is_valid_under_an_independent_validator() {
    let shipped = shipped_yaml();
    let files: Vec<PathBuf> = shipped.iter().map(|(p, _)| p.clone()).collect();
    // No --schema: each file is checked against the schema its first line names, as an
    // editor would, so a wrong path in that line fails here too.
    for ((path, kind), verdict) in shipped.iter().zip(python_verdicts(None, &files)) {
        assert_eq!(verdict["result"], "valid", "{}: {verdict}", path.display());
        let schema = verdict["schema"].as_str().unwrap_or_default();
        assert!(
            Path::new(schema) == repo().join(format!("schemas/{kind}.schema.json")),
            "{} is checked against {schema}",
            path.display()
        );
    }
}

#[test]
fn the_schema_refuses_every_structural_bad_input() {
    let bad = repo().join("fixtures/bad");
    let mut found = BTreeSet::new();
    for case in std::fs::read_dir(&bad).expect("read_dir") {
        let case = case.expect("entry").path();
        if case.file_name().is_some_and(|n| n == "clouds-yaml") {
            continue;
        }
        for dir in ["pipelines", "profiles"] {
            let Ok(entries) = std::fs::read_dir(case.join(dir)) else {
                continue;
            };
            for entry in entries {
                let path = entry.expect("entry").path();
                // A symlink to a device is a bad input for the loader's bounded read, not a
                // YAML document: never open it.
                let regular = std::fs::symlink_metadata(&path).is_ok_and(|m| m.is_file());
                if regular && path.extension().is_some_and(|e| e == "yaml") {
                    let relative = path.strip_prefix(&bad).expect("under fixtures/bad");
                    found.insert(relative.to_string_lossy().into_owned());
                }
            }
        }
    }
    let listed: BTreeSet<String> = BAD_CASES.iter().map(|(f, _)| f.to_string()).collect();
    assert_eq!(
        found, listed,
        "every YAML file under fixtures/bad/ is listed in BAD_CASES with what the schema says"
    );
    assert!(
        BAD_CASES.iter().filter(|(_, e)| *e == Structural).count() >= 12,
        "the structural cases"
    );

    let mut wrong = Vec::new();
    for kind in KINDS {
        let cases: Vec<&(&str, Expect)> = BAD_CASES
            .iter()
            .filter(|(f, _)| kind_of(f) == kind)
            .collect();
        let files: Vec<PathBuf> = cases.iter().map(|(f, _)| bad.join(f)).collect();
        let schema = repo().join(format!("schemas/{kind}.schema.json"));
        for ((file, expect), verdict) in cases.iter().zip(python_verdicts(Some(&schema), &files)) {
            let wanted = match expect {
                Structural | ValueRule => "invalid",
                Semantic(_) => "valid",
                NotYaml => "unparseable",
            };
            if verdict["result"] != wanted {
                wrong.push(format!(
                    "{file} ({expect:?}): expected {wanted}, got {verdict}"
                ));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "the schema disagrees:\n{}",
        wrong.join("\n")
    );
}

fn kind_of(file: &str) -> &'static str {
    if file.contains("/pipelines/") {
        "pipeline"
    } else if file.ends_with("/policy.yaml") {
        "policy"
    } else {
        "profile"
    }
}
