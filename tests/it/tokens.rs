//! Runs that outlast a Keystone token. The harness's `local-short` and `local-short-b` issue
//! tokens that live `CLOUD_SHORT_TOKEN_SECONDS` (30 s); a publish (boot check, then an upload
//! throttled by the fault proxy so that it alone lasts the token's life plus 20 s, whatever
//! the image's size) and a promotion between the two (the target's upload throttled the same
//! way, so the streamed download from the source lasts as long) each go on past a token's
//! life. They must succeed: the calls after the long transfer authenticate again.
//!
//! The two tests take turns, so each can count the tokens Keystone issued during its run in
//! Keystone's access log.

use std::path::PathBuf;
use std::sync::Mutex;

use serde_json::json;

use crate::cloud::{self, Cloud, Sandbox};
use crate::proxy::{Fault, Proxy};
use crate::util::{self, entry, fixture_flake, number, report, text, PipelineCopy};

/// Seconds a throttled upload lasts beyond a token's life.
const MARGIN: u64 = 20;

/// The throttle that makes an upload of `size` bytes last a token's `lifetime` plus
/// [`MARGIN`] seconds (a lower bound by construction: the proxy forwards no faster).
fn rate_for(size: u64, lifetime: i64) -> u64 {
    (size / (lifetime as u64 + MARGIN)).max(1)
}

/// One token test at a time (see the module doc).
static TURN: Mutex<()> = Mutex::new(());

/// The tokens of `cloud` live at most this long, as the harness promises; checked on a real
/// token so the tests below mean what they claim.
fn token_seconds(cloud_name: &str) -> i64 {
    let issued = cloud::openstack(cloud_name, &["token", "issue"]);
    let expires = text(&issued, "expires");
    // python-openstackclient prints e.g. 2026-12-02T15:15:35+0000.
    let format = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second][offset_hour sign:mandatory][offset_minute]"
    );
    let expires = time::OffsetDateTime::parse(expires, &format)
        .unwrap_or_else(|e| panic!("token expiry {expires}: {e}"));
    let left = (expires - time::OffsetDateTime::now_utc()).whole_seconds();
    assert!(
        left <= 60,
        "{cloud_name}'s tokens live {left} s: `make cloud-up` should configure short tokens"
    );
    left.max(1)
}

/// Keystone's access log of `cloud`, written by the harness.
fn access_log(cloud_name: &str) -> PathBuf {
    cloud::clouds_yaml()
        .with_file_name(cloud_name)
        .join("log/keystone.access.log")
}

/// Tokens `cloud`'s Keystone issued so far (`POST /v3/auth/tokens` answered 201).
fn tokens_issued(cloud_name: &str) -> usize {
    std::fs::read_to_string(access_log(cloud_name))
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("\"POST /v3/auth/tokens ") && l.contains("\" 201 "))
        .count()
}

/// A proxy in front of `cloud`'s Glance forwarding `rate` bytes per second, and a
/// clouds.yaml copy in `dir` that sends `cloud`'s image calls through it.
fn throttled(cloud_name: &str, dir: &std::path::Path, rate: u64) -> (Proxy, PathBuf) {
    let proxy = Proxy::start(
        Cloud::connect(cloud_name).glance_addr(),
        vec![Fault::Throttle {
            bytes_per_second: rate,
        }],
    );
    let clouds = cloud::clouds_yaml_copy(dir, |c| {
        c[cloud_name]["image_endpoint_override"] = json!(proxy.url());
    });
    (proxy, clouds)
}

/// `pipeline run` of the sandbox's publish-all copy for `generic` into `local-short`, with
/// `clouds`; it must succeed.
fn publish_generic(s: &Sandbox, clouds: &std::path::Path) -> util::Ran {
    let mut cmd = util::cloud_pipeline(clouds);
    cmd.arg("run")
        .arg(&s.pipeline)
        .args([
            "--cloud",
            "local-short",
            "--profile",
            "generic",
            "--json",
            "--flake",
        ])
        .arg(fixture_flake())
        .env("HEPHAESTUS_RUN_DIR", s.dir.path().join("run"));
    let ran = util::run_std(&mut cmd);
    ran.expect_code(0);
    ran
}

#[test]
fn a_publish_whose_boot_check_and_upload_outlast_the_token_succeeds() {
    let _turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
    let _cloud = cloud::shared();
    let lifetime = token_seconds("local-short");
    let copy = PipelineCopy {
        file: "publish-all.yaml",
        upload_options: &[],
        boot_check: true,
        must_say: &[],
    };
    let s = Sandbox::new("token-publish", &copy, &["local-short"]);
    let image = crate::boot::image("images.generic");
    let image_size = std::fs::metadata(&image)
        .unwrap_or_else(|e| panic!("{}: {e}", image.display()))
        .len();
    let rate = rate_for(image_size, lifetime);
    let (proxy, clouds) = throttled("local-short", s.dir.path(), rate);
    let before = tokens_issued("local-short");

    let ran = publish_generic(&s, &clouds);
    let report = report(&ran);
    let e = entry(&report, "generic");
    assert_eq!(text(e, "status"), "published", "{ran}");

    // The throttle alone made the upload outlast a token (a lower bound by construction).
    let size = number(e, "size");
    assert_eq!(size, image_size, "the fixture image was published");
    assert!(
        proxy.stats().upload_body_bytes >= size && size / rate > lifetime as u64,
        "the upload ({size} bytes at {rate} B/s) must outlast a {lifetime} s token: {}",
        proxy.stats()
    );
    assert!(
        tokens_issued("local-short") >= before + 2,
        "the run authenticated again after its first token"
    );
}

#[test]
fn a_promotion_that_outlasts_the_token_on_both_clouds_succeeds() {
    let _turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
    let _cloud = cloud::shared();
    let lifetime = token_seconds("local-short").min(token_seconds("local-short-b"));
    let copy = PipelineCopy {
        file: "publish-all.yaml",
        upload_options: &[],
        boot_check: false,
        must_say: &[],
    };
    let s = Sandbox::new("token-promote", &copy, &["local-short", "local-short-b"]);
    let published = publish_generic(&s, &cloud::clouds_yaml());
    let published = report(&published);
    let source_id = text(entry(&published, "generic"), "image_id").to_owned();
    let rate = rate_for(number(entry(&published, "generic"), "size"), lifetime);

    // The target's upload is throttled; the download from the source is streamed into it,
    // so both connections last as long.
    let (proxy, clouds) = throttled("local-short-b", s.dir.path(), rate);
    let before = (tokens_issued("local-short"), tokens_issued("local-short-b"));
    let mut promote = util::cloud_pipeline(&clouds);
    promote
        .args(["promote", "--from", "local-short", "--to", "local-short-b"])
        .args(["--profile", "generic", "--json", "--name"])
        .arg(format!("{}-{{profile}}", s.prefix))
        .env("HEPHAESTUS_RUN_DIR", s.dir.path().join("run"));
    let ran = util::run_std(&mut promote);
    ran.expect_code(0);
    let promoted = report(&ran);
    let e = entry(&promoted, "generic");
    assert_eq!(text(e, "status"), "published", "{ran}");
    let size = number(e, "bytes_sent");
    assert!(
        proxy.stats().upload_body_bytes >= size && size / rate > lifetime as u64,
        "the copy ({size} bytes at {rate} B/s) must outlast a {lifetime} s token: {}",
        proxy.stats()
    );

    // The copy is the source's image, byte for byte, as both clouds record it.
    let target_id = text(e, "image_id");
    let source = cloud::openstack("local-short-admin", &["image", "show", &source_id]);
    let target = cloud::openstack("local-short-b-admin", &["image", "show", target_id]);
    for key in ["os_hash_value", "checksum", "size"] {
        assert_eq!(source[key], target[key], "{key}");
    }
    assert!(
        tokens_issued("local-short") > before.0 && tokens_issued("local-short-b") >= before.1 + 2,
        "the promotion authenticated to both clouds, and again to the target after its first token"
    );
}
