//! Build and verify through the `pipeline` command with the real Nix and the fixture flake:
//! every profile's image builds and verifies; every broken output fails with its own message;
//! a corrupted store output is caught; digests equal coreutils'.

use crate::nix::{installable, offline_config};
use crate::util::{copy_tree, fixture_flake, pipeline, project, repo, report, run, Ran};
use hephaestus::firmware::Boot;
use hephaestus::nix::NarHash;
use hephaestus::stage::verify::{verify_file, Error as VerifyError, StoreOutput};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

/// `pipeline run` with offline Nix, its run directory in `run_dir`.
fn run_pipeline(root: &Path, run_dir: &Path, args: &[&str]) -> Ran {
    let mut cmd = pipeline(root);
    cmd.env("NIX_CONFIG", offline_config())
        .env("HEPHAESTUS_RUN_DIR", run_dir)
        .arg("run")
        .args(args);
    run(&mut cmd)
}

/// `pipeline verify-all --flake <fixture flake> EXTRA` in project `root`.
fn verify_all(root: &Path, run_dir: &Path, extra: &[&str]) -> Ran {
    let flake = fixture_flake();
    let mut args = vec!["verify-all", "--flake", flake.to_str().expect("utf-8")];
    args.extend_from_slice(extra);
    run_pipeline(root, run_dir, &args)
}

/// A project root whose `lucy` profile builds `attribute` instead of its image.
fn root_with_lucy_attribute(attribute: &str) -> tempfile::TempDir {
    let dir = project(None);
    let lucy = dir.path().join("profiles/lucy.yaml");
    let text = std::fs::read_to_string(&lucy).expect("lucy.yaml");
    let text = text.replace("attribute: images.lucy", &format!("attribute: {attribute}"));
    std::fs::write(&lucy, text).expect("write lucy.yaml");
    dir
}

/// `nix <args>` with offline Nix, expecting success; its JSON output.
fn nix_json(args: &[&str], path: Option<&Path>) -> Value {
    let mut cmd = Command::new("nix");
    cmd.env("NIX_CONFIG", offline_config()).args(args);
    if let Some(path) = path {
        cmd.arg(path);
    }
    let out = cmd.output().expect("run nix");
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{cmd:?} printed no JSON ({e})"))
}

fn nix_build(attr: &str) -> PathBuf {
    let doc = nix_json(&["build", "--no-link", "--json", &installable(attr)], None);
    PathBuf::from(doc[0]["outputs"]["out"].as_str().expect("out path"))
}

fn registered_nar_hash(path: &Path) -> String {
    let doc = nix_json(&["path-info", "--json"], Some(path));
    let entry = if doc.is_array() {
        &doc[0]
    } else {
        &doc[path.to_str().expect("utf-8 path")]
    };
    entry["narHash"].as_str().expect("narHash").to_string()
}

#[test]
fn verify_all_builds_and_verifies_every_profile() {
    let run_dir = tempfile::tempdir().expect("tempdir");
    let ran = verify_all(&repo(), run_dir.path(), &["--json"]);
    ran.expect_code(0);
    let doc = report(&ran);
    let images = doc["images"].as_array().expect("images");
    assert_eq!(images.len(), 5);
    for image in images {
        assert_eq!(image["status"], "verified", "{image}");
        let firmware = if image["profile"] == "sunraku" {
            "bios"
        } else {
            "uefi"
        };
        assert_eq!(image["firmware"], firmware);
        assert_eq!(image["properties"]["hw_firmware_type"], firmware);
        assert_eq!(image["properties"]["os_version"], "25.11");
        assert!(image["store_path"]
            .as_str()
            .is_some_and(|p| p.starts_with("/nix/store/")));
        assert_eq!(image["sha512"].as_str().map(str::len), Some(128));
        assert_eq!(
            image["properties"]["owner_specified.openstack.md5"], image["md5"],
            "the tag stage's md5 property is the verified md5"
        );
        let stages: Vec<&str> = image["stages"]
            .as_array()
            .expect("stages")
            .iter()
            .map(|s| s["status"].as_str().unwrap_or(""))
            .collect();
        assert_eq!(stages, ["ok"; 4]);
    }
    // The GC roots are gone after the run unless --keep-outputs.
    let leftovers: Vec<_> = walk(run_dir.path())
        .into_iter()
        .filter(|p| p.ends_with("lucy"))
        .collect();
    assert!(leftovers.is_empty(), "GC roots left behind: {leftovers:?}");
}

#[test]
fn keep_outputs_keeps_the_gc_roots() {
    let run_dir = tempfile::tempdir().expect("tempdir");
    let ran = verify_all(
        &repo(),
        run_dir.path(),
        &["--profile", "sunraku", "--keep-outputs", "--json"],
    );
    ran.expect_code(0).stderr_has("kept alive by the GC roots");
    let doc = report(&ran);
    let store_path = PathBuf::from(doc["images"][0]["store_path"].as_str().expect("store path"));
    let roots: Vec<PathBuf> = walk(run_dir.path())
        .into_iter()
        .filter(|p| p.parent().is_some_and(|d| d.ends_with("gc-roots")))
        .collect();
    assert_eq!(roots.len(), 1, "{roots:?}");
    let target = std::fs::read_link(&roots[0]).expect("the GC root is a symlink");
    assert_eq!(target, store_path, "the GC root keeps the reported build");
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            out.push(p.clone());
            if p.is_dir() && !p.is_symlink() {
                out.extend(walk(&p));
            }
        }
    }
    out
}

#[test]
fn every_broken_output_fails_with_its_own_message() {
    let cases = [
        (
            "broken.wrong-firmware",
            "uefi firmware (profile boot: uefi) needs a GPT disk",
        ),
        ("broken.backing-file", "has a backing file \"base.qcow2\""),
        ("broken.not-qcow2", "is not a qcow2 image"),
        ("broken.build-fails", "deliberate build failure"),
    ];
    for (attribute, message) in cases {
        let root = root_with_lucy_attribute(attribute);
        let run_dir = tempfile::tempdir().expect("tempdir");
        let ran = verify_all(
            root.path(),
            run_dir.path(),
            &["--profile", "lucy", "--json"],
        );
        ran.expect_code(1).stderr_has(message);
        let doc = report(&ran);
        let image = &doc["images"][0];
        assert_eq!(image["status"], "failed", "{attribute}: {image}");
        assert!(
            image["error"].as_str().is_some_and(|e| e.contains(message)),
            "{attribute}: the report's error lacks {message:?}: {image}"
        );
    }
}

#[test]
fn a_build_failure_names_the_nix_command() {
    let root = root_with_lucy_attribute("broken.build-fails");
    let run_dir = tempfile::tempdir().expect("tempdir");
    verify_all(root.path(), run_dir.path(), &["--profile", "lucy"])
        .expect_code(1)
        .stderr_has("`nix build --json")
        .stderr_has("broken.build-fails");
}

#[test]
fn a_corrupted_store_output_is_caught_by_the_nar_check() {
    let out = nix_build("images.lucy");
    let nar_hash = registered_nar_hash(&out);
    let copy = tempfile::tempdir().expect("tempdir");
    let copied = copy.path().join("out");
    copy_tree(&out, &copied);
    let image = copied.join("nixos.qcow2");
    // The copy verifies while it is intact...
    let store = StoreOutput {
        path: copied.clone(),
        nar_hash: NarHash::try_from(nar_hash.clone()).expect("Nix's narHash parses"),
    };
    let ok = verify_file(&image, Boot::Uefi, Some(&store)).expect("an intact copy verifies");
    assert!(ok.nar_checked);
    // ...and not once one byte far from the header and partition table changed.
    let mut bytes = std::fs::read(&image).expect("read copy");
    let last = bytes.len() - 1;
    bytes[last] ^= 0x5a;
    std::fs::write(&image, bytes).expect("corrupt copy");
    let err =
        verify_file(&image, Boot::Uefi, Some(&store)).expect_err("a corrupted copy is refused");
    assert!(matches!(err, VerifyError::Nar(_)), "{err:?}");
    let text = hephaestus::error::error_chain(&err);
    assert!(
        text.contains(&nar_hash),
        "the error shows the registered hash: {text}"
    );
    assert!(text.contains("store integrity"), "{text}");
}

#[test]
fn verify_command_digests_equal_coreutils() {
    let out = nix_build("images.sunraku");
    let image = out.join("nixos.qcow2");
    let mut cmd = pipeline(&repo());
    cmd.env("NIX_CONFIG", offline_config())
        .arg("verify")
        .arg(&image)
        .args(["--profile", "sunraku", "--json"]);
    let ran = run(&mut cmd);
    ran.expect_code(0)
        .stderr_has("NAR hash of the store output matches");
    let doc: Value = serde_json::from_str(&ran.stdout).expect("verify --json");
    for (tool, key) in [
        ("md5sum", "md5"),
        ("sha256sum", "sha256"),
        ("sha512sum", "sha512"),
    ] {
        let out = Command::new(tool).arg(&image).output().expect("coreutils");
        let text = String::from_utf8_lossy(&out.stdout);
        let theirs = text.split_whitespace().next().expect("digest");
        assert_eq!(doc["digests"][key], theirs, "{tool}");
    }
    assert_eq!(
        doc["digests"]["size"],
        std::fs::metadata(&image).expect("size").len()
    );
}

#[test]
fn verify_command_refuses_the_wrong_firmware() {
    let out = nix_build("images.sunraku");
    let mut cmd = pipeline(&repo());
    cmd.env("NIX_CONFIG", offline_config())
        .arg("verify")
        .arg(out.join("nixos.qcow2"))
        .args(["--profile", "lucy"]);
    run(&mut cmd)
        .expect_code(1)
        .stderr_has("is not fit to publish as `lucy` (uefi)")
        .stderr_has("MBR partition table");
}
