//! `hephaestus::nix` against the real `nix` and the fixture flake (`fixtures/flake`), offline.
//!
//! These tests need Nix installed (`make install-nix`); without it they fail with a message
//! saying so. They read the offline settings from `scripts/nix-offline.conf` themselves, so a
//! plain `cargo test` works without sourcing anything.

use hephaestus::nix::{self, BootMode, ImageInfoSource, Nix, StorePath};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

const BUILD_TIMEOUT: Duration = Duration::from_secs(300);
const PROFILES: [(&str, BootMode); 5] = [
    ("lucy", BootMode::Uefi),
    ("makise", BootMode::Uefi),
    ("quinn", BootMode::Uefi),
    ("generic", BootMode::Uefi),
    ("sunraku", BootMode::LegacyBios),
];

/// The offline `NIX_CONFIG` of `scripts/nix-offline.conf` (as `scripts/nix-env.sh` fills it
/// in), with its empty flake registry written under the target directory. Panics, failing
/// the test, when `nix` cannot be run.
/// Other test modules use it too, e.g. to give the `pipeline` binary `NIX_CONFIG`.
pub(crate) fn offline_config() -> &'static str {
    static CONFIG: OnceLock<String> = OnceLock::new();
    CONFIG.get_or_init(|| {
        match Command::new("nix").arg("--version").output() {
            Ok(out) if out.status.success() => {}
            Ok(out) => panic!(
                "`nix --version` failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            ),
            Err(e) => panic!(
                "`nix` is not installed or not on PATH ({e}); these tests need it: \
                 run `make install-nix` (scripts/install-nix.sh, as root)"
            ),
        }
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("hephaestus-nix");
        std::fs::create_dir_all(&dir).unwrap();
        let registry = dir.join("empty-registry.json");
        // Other test processes may write it at the same time: write aside, then rename.
        let tmp = dir.join(format!("empty-registry.json.{}", std::process::id()));
        std::fs::write(&tmp, "{\"flakes\":[],\"version\":2}\n").unwrap();
        std::fs::rename(&tmp, &registry).unwrap();
        let has_nixbld = std::fs::read_to_string("/etc/group")
            .unwrap_or_default()
            .lines()
            .any(|l| l.starts_with("nixbld:"));
        let group = if has_nixbld { "nixbld" } else { "" };
        let conf = crate::util::repo().join("scripts/nix-offline.conf");
        let template = std::fs::read_to_string(&conf)
            .unwrap_or_else(|e| panic!("reading {}: {e}", conf.display()));
        template
            .lines()
            .filter(|l| !l.starts_with('#'))
            .map(|l| {
                l.replace("@FLAKE_REGISTRY@", &registry.display().to_string())
                    .replace("@BUILD_USERS_GROUP@", group)
                    + "\n"
            })
            .collect()
    })
}

fn nix() -> Nix {
    Nix::new().with_env("NIX_CONFIG", offline_config())
}

/// The fixture flake as a flake reference: `path:` so files git does not track yet are part of
/// it (a `git+file:` flake would not see them).
pub(crate) fn fixture_flake() -> String {
    format!("path:{}/fixtures/flake", env!("CARGO_MANIFEST_DIR"))
}

/// `<fixture flake>#<attr>`.
pub(crate) fn installable(attr: &str) -> String {
    format!("{}#{attr}", fixture_flake())
}

struct Built {
    out: StorePath,
    link: PathBuf,
    _dir: tempfile::TempDir,
}

async fn build(attr: &str) -> Built {
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("result");
    let built = nix()
        .build(&installable(attr), &link, BUILD_TIMEOUT)
        .await
        .unwrap_or_else(|e| panic!("building {attr}: {e}"));
    assert_eq!(
        std::fs::read_link(&link).unwrap(),
        built.out.as_path(),
        "the out-link is the GC root of the output"
    );
    Built {
        out: built.out,
        link,
        _dir: dir,
    }
}

#[tokio::test]
async fn every_profile_image_builds_with_image_info_and_nar_hash() {
    let mut hashes = BTreeSet::new();
    for (profile, boot_mode) in PROFILES {
        let built = build(&format!("images.{profile}")).await;
        assert!(
            built.out.name().contains(profile),
            "{profile}: {}",
            built.out
        );

        let info = nix::read_image_info(&built.link).unwrap();
        assert_eq!(
            info.file,
            built.out.as_path().join("nixos.qcow2"),
            "{profile}"
        );
        assert_eq!(info.format, "qcow2");
        assert_eq!(info.boot_mode, Some(boot_mode), "{profile}");
        assert_eq!(info.label.as_deref(), Some("25.11"));
        assert_eq!(info.system.as_deref(), Some("x86_64-linux"));
        assert!(matches!(info.source, ImageInfoSource::ImageInfoJson(_)));
        let head = std::fs::read(&info.file).unwrap();
        assert_eq!(&head[..4], b"QFI\xfb", "{profile}: qcow2 magic");

        let path_info = nix().path_info(&built.out).await.unwrap();
        assert_eq!(path_info.path, built.out);
        assert!(
            path_info.nar_size > head.len() as u64,
            "{profile}: {path_info:?}"
        );
        assert!(
            path_info.nar_hash.as_str().starts_with("sha256"),
            "{path_info:?}"
        );
        hashes.insert(path_info.nar_hash.digest());
    }
    assert_eq!(
        hashes.len(),
        PROFILES.len(),
        "every profile's image differs"
    );
}

#[tokio::test]
async fn changed_image_differs_from_the_original() {
    let original = build("images.lucy").await;
    let changed = build("images-changed.lucy").await;
    assert_ne!(original.out, changed.out);
    let a = nix().path_info(&original.out).await.unwrap();
    let b = nix().path_info(&changed.out).await.unwrap();
    assert_ne!(a.nar_hash, b.nar_hash);
    let info = nix::read_image_info(&changed.link).unwrap();
    assert_eq!(info.boot_mode, Some(BootMode::Uefi));
}

#[tokio::test]
async fn eval_out_path_names_what_build_builds() {
    let evaluated = nix()
        .eval_out_path(&installable("images.sunraku"))
        .await
        .unwrap();
    let built = build("images.sunraku").await;
    assert_eq!(evaluated, built.out);
}

#[tokio::test]
async fn fallback_output_without_image_info_uses_its_single_qcow2() {
    let built = build("fallback.no-image-info").await;
    assert!(!built.link.join("nix-support").exists());
    let info = nix::read_image_info(&built.link).unwrap();
    assert_eq!(info.source, ImageInfoSource::SingleQcow2);
    assert_eq!(info.file, built.out.as_path().join("nixos.qcow2"));
    assert_eq!(info.boot_mode, None);
}

#[tokio::test]
async fn broken_outputs_build_and_describe_themselves() {
    // They are broken for the verify stage, not for Nix: each builds and has image-info.json.
    for name in ["wrong-firmware", "backing-file", "not-qcow2"] {
        let built = build(&format!("broken.{name}")).await;
        let info = nix::read_image_info(&built.link).unwrap();
        assert_eq!(info.boot_mode, Some(BootMode::Uefi), "{name}");
        assert!(info.file.is_file(), "{name}");
    }
}

#[tokio::test]
async fn build_failure_shows_argv_and_the_builders_stderr() {
    let dir = tempfile::tempdir().unwrap();
    let attr = installable("broken.build-fails");
    let err = nix()
        .build(&attr, &dir.path().join("result"), BUILD_TIMEOUT)
        .await
        .unwrap_err();
    assert!(matches!(err, nix::Error::Failed { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("nix build --json"), "{msg}");
    assert!(msg.contains(&attr), "{msg}");
    assert!(msg.contains("exit status: 1"), "{msg}");
    assert!(
        msg.contains("hephaestus-fixture: deliberate build failure of profile lucy"),
        "{msg}"
    );
    assert!(!dir.path().join("result").exists());
}

#[tokio::test]
async fn unknown_attribute_is_a_failed_command_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let err = nix()
        .build(
            &installable("images.nonexistent"),
            &dir.path().join("result"),
            BUILD_TIMEOUT,
        )
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, nix::Error::Failed { .. }), "{err:?}");
    assert!(msg.contains("images.nonexistent"), "{msg}");
}

#[test]
fn fixture_images_are_reproducible() {
    // `--rebuild` builds again and fails if the bytes differ from the registered output.
    for attr in ["images.lucy", "images.sunraku"] {
        let built = Command::new("nix")
            .env("NIX_CONFIG", offline_config())
            .args(["build", "--no-link"])
            .arg(installable(attr))
            .output()
            .unwrap();
        assert!(built.status.success(), "{attr}: {built:?}");
        let rebuilt = Command::new("nix")
            .env("NIX_CONFIG", offline_config())
            .args(["build", "--no-link", "--rebuild"])
            .arg(installable(attr))
            .output()
            .unwrap();
        assert!(
            rebuilt.status.success(),
            "{attr} is not reproducible: {}",
            String::from_utf8_lossy(&rebuilt.stderr)
        );
    }
}

#[tokio::test]
async fn attribute_names_reach_nix_as_data_never_as_code() {
    // Evaluated as code, each of these would abort with "injected"; as data they are names
    // of attributes that do not exist.
    for hostile in [
        r#"x" = builtins.abort "injected"; y = "#,
        r#"${builtins.abort "injected"}"#,
    ] {
        let err = nix()
            .eval_derivations(&fixture_flake(), "images", &["lucy", hostile])
            .await
            .expect_err("no such attribute");
        let msg = err.to_string();
        assert!(!msg.contains("aborted"), "the name was evaluated: {msg}");
        assert!(msg.contains("' missing"), "a missing attribute: {msg}");
    }
    let paths = nix()
        .eval_derivations(&fixture_flake(), "images", &["lucy", "sunraku"])
        .await
        .expect("the plain names evaluate");
    assert_eq!(
        paths.keys().map(String::as_str).collect::<Vec<_>>(),
        ["lucy", "sunraku"]
    );
}
