//! Application credentials, as CI and the nightly timer should authenticate: one is created in
//! the real Keystone of `local` for the harness's member user, then the pipeline publishes
//! with it from clouds.yaml (`auth_type: v3applicationcredential`) and from the
//! `OS_APPLICATION_CREDENTIAL_*` environment. The credential is deleted at the end.

use serde_json::{json, Value};

use crate::cloud::{self, assert_current, Cloud, Sandbox};
use crate::util::{self, entry, fixture_flake, report, text, PipelineCopy};

/// An application credential of the member user of `local`, deleted when dropped.
struct AppCredential {
    id: String,
    secret: String,
}

impl AppCredential {
    fn create(name: &str) -> AppCredential {
        let made: Value = cloud::openstack(
            "local",
            &[
                "application",
                "credential",
                "create",
                "--description",
                "hephaestus test: publish images",
                // Only the role publishing needs, as README recommends.
                "--role",
                "member",
                name,
            ],
        );
        AppCredential {
            id: made["ID"].as_str().expect("ID").to_string(),
            secret: made["Secret"].as_str().expect("Secret").to_string(),
        }
    }
}

impl Drop for AppCredential {
    fn drop(&mut self) {
        let _ = std::panic::catch_unwind(|| {
            cloud::openstack_run("local", &["application", "credential", "delete", &self.id])
        });
    }
}

#[test]
fn an_application_credential_publishes_from_clouds_yaml_and_from_the_environment() {
    let _cloud = cloud::shared();
    let copy = PipelineCopy {
        file: "publish-all.yaml",
        upload_options: &[],
        boot_check: false,
        must_say: &[],
    };
    let s = Sandbox::new("app-credential", &copy, &["local"]);
    let credential = AppCredential::create(&format!("{}-ci", s.prefix));
    let doc = cloud::clouds();
    let local = &doc["clouds"]["local"];
    let auth_url = local["auth"]["auth_url"]
        .as_str()
        .expect("auth_url")
        .to_string();
    let clouds = cloud::clouds_yaml_copy(s.dir.path(), |c| {
        c["ci"] = json!({
            "auth_type": "v3applicationcredential",
            "auth": {
                "auth_url": auth_url,
                "application_credential_id": credential.id,
                "application_credential_secret": credential.secret,
            },
            "region_name": local["region_name"],
            "interface": "public",
            "identity_api_version": 3,
        });
    });
    let publish = |cmd: &mut std::process::Command, cloud: &[&str], flake: &std::path::Path| {
        cmd.arg("run")
            .arg(&s.pipeline)
            .args(cloud)
            .args(["--json", "--profile", "lucy", "--flake"])
            .arg(flake)
            .env("HEPHAESTUS_RUN_DIR", s.dir.path().join("run"));
        let ran = util::run_std(cmd);
        ran.expect_code(0);
        assert!(
            !ran.stderr.contains(&credential.secret),
            "the secret leaks\n{ran}"
        );
        let r = report(&ran);
        assert_eq!(text(entry(&r, "lucy"), "status"), "published", "{ran}");
        text(entry(&r, "lucy"), "image_id").to_string()
    };

    // From clouds.yaml.
    let mut cmd = util::cloud_pipeline(&clouds);
    let first = publish(
        cmd.current_dir(s.dir.path()),
        &["--cloud", "ci"],
        &fixture_flake(),
    );
    // From the environment (`--cloud envvars`, as openstacksdk names it), without clouds.yaml.
    let mut cmd = util::cloud_pipeline(&s.dir.path().join("no-clouds.yaml"));
    cmd.env_remove("OS_CLIENT_CONFIG_FILE")
        .env("OS_AUTH_TYPE", "v3applicationcredential")
        .env("OS_AUTH_URL", &auth_url)
        .env("OS_APPLICATION_CREDENTIAL_ID", &credential.id)
        .env("OS_APPLICATION_CREDENTIAL_SECRET", &credential.secret)
        .env(
            "OS_REGION_NAME",
            local["region_name"].as_str().unwrap_or("RegionOne"),
        )
        .current_dir(s.dir.path());
    let second = publish(
        &mut cmd,
        &["--cloud", "envvars"],
        &s.changed_flake("it-publish-changed"),
    );
    assert_ne!(first, second);
    let admin = Cloud::connect("local-admin");
    assert_current(&admin.image(&second), &s.stable("lucy"));
}

#[test]
fn secure_yaml_and_a_clouds_public_profile_complete_a_clouds_yaml_entry() {
    let _cloud = cloud::shared();
    let copy = PipelineCopy {
        file: "publish-all.yaml",
        upload_options: &[],
        boot_check: false,
        must_say: &[],
    };
    let s = Sandbox::new("secure-yaml", &copy, &["local"]);
    let doc = cloud::clouds();
    let local = doc["clouds"]["local"].clone();
    let dir = s.dir.path();
    // clouds.yaml: no password and no auth_url; the vendor profile has the URL and region,
    // secure.yaml the password, as openstacksdk splits them.
    let mut partial = local.clone();
    partial["profile"] = json!("lab");
    partial["auth"].as_object_mut().unwrap().remove("password");
    partial["auth"].as_object_mut().unwrap().remove("auth_url");
    partial.as_object_mut().unwrap().remove("region_name");
    std::fs::write(
        dir.join("clouds.yaml"),
        serde_json::to_string(&json!({ "clouds": { "split": partial } })).unwrap(),
    )
    .unwrap();
    std::fs::write(
        dir.join("clouds-public.yaml"),
        serde_json::to_string(&json!({ "public-clouds": { "lab": {
            "auth": { "auth_url": local["auth"]["auth_url"] },
            "region_name": local["region_name"],
        }}}))
        .unwrap(),
    )
    .unwrap();
    let secure = dir.join("secrets.yaml");
    std::fs::write(
        &secure,
        serde_json::to_string(&json!({ "clouds": { "split": { "auth": {
            "password": local["auth"]["password"],
        }}}}))
        .unwrap(),
    )
    .unwrap();
    let mut cmd = util::cloud_pipeline(&dir.join("clouds.yaml"));
    cmd.current_dir(dir)
        .env("OS_CLIENT_SECURE_FILE", &secure)
        .arg("run")
        .arg(&s.pipeline)
        .args(["--cloud", "split", "--json", "--profile", "lucy", "--flake"])
        .arg(fixture_flake())
        .env("HEPHAESTUS_RUN_DIR", dir.join("run"));
    let ran = util::run_std(&mut cmd);
    ran.expect_code(0);
    let r = report(&ran);
    assert_eq!(text(entry(&r, "lucy"), "status"), "published", "{ran}");
    // Without secure.yaml the password is missing: the entry alone cannot authenticate.
    let mut cmd = util::cloud_pipeline(&dir.join("clouds.yaml"));
    cmd.current_dir(dir).args(["images", "--cloud", "split"]);
    let ran = util::run_std(&mut cmd);
    assert_ne!(ran.code, 0, "no password, no session\n{ran}");
}
