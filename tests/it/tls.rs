//! HTTPS clouds: the harness's `local-small` serves Keystone and Glance over TLS with a
//! certificate of a throwaway CA (`.run/cloud/tls`, made by up.sh; it names only
//! 127.0.0.1). Each way of trusting that CA is tried on its own, and so are the ways a
//! handshake must fail.

use crate::cloud;
use crate::util;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::Command;

const CLOUD: &str = "local-small";

/// The CA that signed local-small's certificate.
fn ca() -> PathBuf {
    let ca = PathBuf::from(
        cloud::clouds()["clouds"][CLOUD]["cacert"]
            .as_str()
            .expect("local-small's clouds.yaml entry names the test CA (cacert)"),
    );
    assert!(ca.is_file(), "{} is missing", ca.display());
    ca
}

/// `pipeline images --cloud local-small` with `clouds`, no trust settings from the caller's
/// environment, and `env` on top.
fn images(clouds: &Path, env: &[(&str, &Path)]) -> util::Ran {
    let mut cmd = util::cloud_pipeline(clouds);
    cmd.args(["images", "--cloud", CLOUD])
        .env_remove("SSL_CERT_FILE")
        .env_remove("SSL_CERT_DIR")
        .env_remove("OS_CACERT");
    for (k, v) in env {
        cmd.env(k, v);
    }
    util::run_std(&mut cmd)
}

/// A copy of the harness's clouds.yaml whose local-small entry is edited by `edit`.
fn entry_copy(dir: &Path, edit: impl FnOnce(&mut serde_json::Value)) -> PathBuf {
    cloud::clouds_yaml_copy(dir, |c| edit(&mut c[CLOUD]))
}

fn without_cacert(entry: &mut serde_json::Value) {
    entry.as_object_mut().expect("an entry").remove("cacert");
}

#[test]
fn cacert_in_clouds_yaml_is_trusted() {
    let _cloud = cloud::shared();
    let ran = images(&cloud::clouds_yaml(), &[]);
    ran.expect_code(0).stderr_has("cloud local-small:");
}

#[test]
fn os_cacert_is_trusted_for_a_named_cloud_and_for_the_environment() {
    let _cloud = cloud::shared();
    let dir = tempfile::tempdir().expect("tempdir");
    let clouds = entry_copy(dir.path(), without_cacert);
    images(&clouds, &[("OS_CACERT", &ca())])
        .expect_code(0)
        .stderr_has("cloud local-small:");

    let auth = &cloud::clouds()["clouds"][CLOUD]["auth"];
    let var = |k: &str| auth[k].as_str().expect(k).to_owned();
    let mut cmd = util::cloud_pipeline(&dir.path().join("none.yaml"));
    cmd.args(["images", "--cloud", "envvars"])
        .env_remove("SSL_CERT_FILE")
        .env_remove("SSL_CERT_DIR")
        .env("OS_AUTH_URL", var("auth_url"))
        .env("OS_USERNAME", var("username"))
        .env("OS_PASSWORD", var("password"))
        .env("OS_PROJECT_NAME", var("project_name"))
        .env("OS_USER_DOMAIN_NAME", "Default")
        .env("OS_PROJECT_DOMAIN_NAME", "Default")
        .env("OS_CACERT", ca());
    util::run_std(&mut cmd)
        .expect_code(0)
        .stderr_has("cloud from OS_* environment:");
}

#[test]
fn a_ca_in_the_system_trust_store_is_trusted_without_cacert() {
    let _cloud = cloud::shared();
    let dir = tempfile::tempdir().expect("tempdir");
    let clouds = entry_copy(dir.path(), without_cacert);
    // SSL_CERT_FILE replaces the system store (/etc/ssl/certs) as OpenSSL's own tools do.
    images(&clouds, &[("SSL_CERT_FILE", &ca())])
        .expect_code(0)
        .stderr_has("cloud local-small:");
}

#[test]
fn an_untrusted_certificate_is_exit_2_naming_the_cloud_the_host_and_the_fix() {
    let _cloud = cloud::shared();
    let dir = tempfile::tempdir().expect("tempdir");
    let clouds = entry_copy(dir.path(), without_cacert);
    let port = cloud::clouds()["clouds"][CLOUD]["auth"]["auth_url"]
        .as_str()
        .and_then(|u| u.rsplit(':').next())
        .and_then(|p| p.split('/').next())
        .expect("a port")
        .to_owned();
    images(&clouds, &[])
        .expect_code(2)
        .stderr_has("cloud local-small: the TLS certificate of ")
        .stderr_has(&format!(
            "127.0.0.1:{port} is not signed by a CA this machine trusts"
        ))
        .stderr_has("fix: set `cacert:`");
}

#[test]
fn a_certificate_for_another_name_is_refused() {
    let _cloud = cloud::shared();
    let dir = tempfile::tempdir().expect("tempdir");
    // The certificate names 127.0.0.1 only; `localhost` reaches the same server.
    let clouds = entry_copy(dir.path(), |e| {
        let url = e["auth"]["auth_url"].as_str().expect("auth_url").to_owned();
        e["auth"]["auth_url"] = json!(url.replace("127.0.0.1", "localhost"));
    });
    images(&clouds, &[("OS_CACERT", &ca())])
        .expect_code(2)
        .stderr_has("is not valid for the name `localhost`");
}

#[test]
fn verify_false_and_insecure_are_honoured_with_a_warning_on_every_run() {
    let _cloud = cloud::shared();
    let dir = tempfile::tempdir().expect("tempdir");
    for (key, value) in [("verify", false), ("insecure", true)] {
        let clouds = entry_copy(dir.path(), |e| {
            without_cacert(e);
            e[key] = json!(value);
        });
        for _ in 0..2 {
            images(&clouds, &[])
                .expect_code(0)
                .stderr_has("cloud local-small:")
                .stderr_has("TLS certificate verification is off");
        }
    }
}

/// A TLS server that demands a client certificate signed by the test CA: `openssl s_server`
/// on a free loopback port, answering `GET /` with a status page. Killed (it is ours) when
/// dropped.
struct ClientCertServer {
    child: std::process::Child,
    port: u16,
}

impl Drop for ClientCertServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn openssl(args: &[&str], dir: &Path) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_client_certificate_from_cert_and_key_is_presented() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = ca();
    let ca_key = ca.with_file_name("ca.key");
    let server = ca.with_file_name("server.pem");
    let server_key = ca.with_file_name("server.key");
    let d = dir.path();
    std::fs::write(d.join("client.ext"), "extendedKeyUsage=clientAuth\n").expect("ext");
    openssl(
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=publisher",
            "-keyout",
            "client.key",
            "-out",
            "client.csr",
        ],
        d,
    );
    openssl(
        &[
            "x509",
            "-req",
            "-in",
            "client.csr",
            "-CA",
            ca.to_str().expect("utf-8"),
            "-CAkey",
            ca_key.to_str().expect("utf-8"),
            "-CAcreateserial",
            "-CAserial",
            "ca.srl",
            "-days",
            "1",
            "-extfile",
            "client.ext",
            "-out",
            "client.pem",
        ],
        d,
    );
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
        l.local_addr().expect("addr").port()
    };
    let child = Command::new("openssl")
        .args(["s_server", "-quiet", "-www", "-Verify", "1", "-accept"])
        .arg(format!("127.0.0.1:{port}"))
        .arg("-cert")
        .arg(&server)
        .arg("-key")
        .arg(&server_key)
        .arg("-CAfile")
        .arg(&ca)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("openssl s_server");
    let server = ClientCertServer { child, port };
    let url = format!("https://127.0.0.1:{}/", server.port);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let ready = (0..200).any(|_| {
        std::thread::sleep(std::time::Duration::from_millis(50));
        std::net::TcpStream::connect(("127.0.0.1", server.port)).is_ok()
    });
    assert!(ready, "openssl s_server did not start on {url}");
    let get = |tls: hephaestus::glance::tls::Tls| {
        let client = tls.client().expect("a client");
        runtime.block_on(async { client.get(&url).send().await.map(|r| r.status().as_u16()) })
    };
    let with_cert = hephaestus::glance::tls::Tls {
        cacert: Some(ca.clone()),
        verify: true,
        client_cert: Some((d.join("client.pem"), Some(d.join("client.key")))),
    };
    assert_eq!(
        get(with_cert).expect("the handshake with a client certificate"),
        200
    );
    let without = hephaestus::glance::tls::Tls {
        cacert: Some(ca),
        verify: true,
        client_cert: None,
    };
    assert!(
        get(without).is_err(),
        "the server demands a client certificate"
    );
}
