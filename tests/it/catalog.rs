//! Which Glance endpoint of Keystone's catalog is used: `interface` and `region_name` of the
//! clouds.yaml entry, else `OS_INTERFACE` and `OS_REGION_NAME`. The harness lists `local`'s
//! Glance three times: public and admin in RegionOne as `http://127.0.0.1:PORT`, internal in
//! RegionOne and public in RegionTwo as `http://localhost:PORT` (the same server by another
//! name), so the endpoint a run logs tells which entry was chosen.

use crate::cloud;
use crate::util;
use serde_json::json;
use std::path::Path;

/// `pipeline -vv images --cloud local` with `clouds` and `env`; returns the endpoint it
/// logged, after checking that it answered.
fn endpoint_used(clouds: &Path, env: &[(&str, &str)]) -> String {
    let mut cmd = util::cloud_pipeline(clouds);
    cmd.args(["-vv", "images", "--cloud", "local"])
        .env_remove("OS_INTERFACE")
        .env_remove("OS_REGION_NAME");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let ran = util::run_std(&mut cmd);
    ran.expect_code(0).stderr_has("cloud local:");
    let line = ran
        .stderr
        .lines()
        .find(|l| l.contains("image endpoint"))
        .unwrap_or_else(|| panic!("no endpoint logged\n{ran}"));
    let at = line.find("endpoint=").expect("endpoint=") + "endpoint=".len();
    line[at..]
        .split_whitespace()
        .next()
        .unwrap_or("")
        .to_owned()
}

#[test]
fn interface_and_region_choose_the_catalog_endpoint_from_the_entry_or_the_environment() {
    let _cloud = cloud::shared();
    let dir = tempfile::tempdir().expect("tempdir");
    let harness = cloud::clouds_yaml();
    assert!(
        endpoint_used(&harness, &[]).starts_with("http://127.0.0.1:"),
        "public, RegionOne"
    );

    let internal = cloud::clouds_yaml_copy(dir.path(), |c| {
        c["local"]["interface"] = json!("internal");
    });
    assert!(endpoint_used(&internal, &[]).starts_with("http://localhost:"));

    let region_two = cloud::clouds_yaml_copy(dir.path(), |c| {
        c["local"]["region_name"] = json!("RegionTwo");
    });
    assert!(endpoint_used(&region_two, &[]).starts_with("http://localhost:"));

    // The environment fills only what the entry leaves open.
    let open = cloud::clouds_yaml_copy(dir.path(), |c| {
        let e = c["local"].as_object_mut().expect("an entry");
        e.remove("interface");
        e.remove("region_name");
    });
    assert!(endpoint_used(&open, &[("OS_INTERFACE", "internal")]).starts_with("http://localhost:"));
    assert!(
        endpoint_used(&open, &[("OS_REGION_NAME", "RegionTwo")]).starts_with("http://localhost:")
    );
    assert!(
        endpoint_used(&harness, &[("OS_INTERFACE", "internal")]).starts_with("http://127.0.0.1:"),
        "the entry's `interface: public` wins over OS_INTERFACE"
    );
}

#[test]
fn a_region_without_glance_is_a_clear_error() {
    let _cloud = cloud::shared();
    let dir = tempfile::tempdir().expect("tempdir");
    let clouds = cloud::clouds_yaml_copy(dir.path(), |c| {
        c["local"]["region_name"] = json!("RegionThree");
    });
    let mut cmd = util::cloud_pipeline(&clouds);
    cmd.args(["images", "--cloud", "local"]);
    util::run_std(&mut cmd)
        .expect_code(2)
        .stderr_has("cloud local")
        .stderr_has("catalog lists no image endpoint for region RegionThree, interface public")
        .stderr_has("fix: set region_name");
}
