//! Nix remote builders: a real build machine on loopback. The harness starts Debian's sshd as
//! the current user on a free 127.0.0.1 port, with its own host key, client key, sshd_config and
//! known_hosts (nothing of the system's ssh configuration is read or changed). Its sessions get
//! `NIX_CONF_DIR` pointing at the builder's own nix.conf, whose store is a chroot store in the
//! test's directory: what is found there was built there. The pipeline's side also uses a
//! chroot store (`store:`), so every test builds from nothing and leaves nothing in /nix/store.

use crate::nix::offline_config;
use crate::util::{pipeline, project, report, run, Ran};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const SSHD: &str = "/usr/sbin/sshd";

/// A build machine reached over ssh: sshd with its own configuration, stopped (by its pid) when
/// dropped.
struct Builder {
    dir: tempfile::TempDir,
    sshd: Child,
}

impl Builder {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The builder's store root: a chroot store, `<root>/nix/store`.
    fn store(&self) -> PathBuf {
        self.path("builder-store")
    }

    /// `NIX_SSHOPTS` that make `ssh hephaestus-builder` reach it with the generated keys.
    fn ssh_opts(&self) -> String {
        format!("-F {}", self.path("ssh_config").display())
    }

    fn sshd_log(&self) -> String {
        std::fs::read_to_string(self.path("sshd.log")).unwrap_or_default()
    }

    fn start() -> Builder {
        assert!(
            Path::new(SSHD).is_file(),
            "{SSHD} is missing: run `make install-deps` (openssh-server, scripts/install-nix.sh)"
        );
        let dir = tempfile::tempdir().expect("tempdir");
        let p = |name: &str| dir.path().join(name);
        for key in ["host_key", "client_key"] {
            let out = Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-C", key, "-f"])
                .arg(p(key))
                .output()
                .expect("run ssh-keygen");
            assert!(out.status.success(), "ssh-keygen: {out:?}");
        }
        std::fs::copy(p("client_key.pub"), p("authorized_keys")).expect("authorized_keys");
        let user = String::from_utf8(
            Command::new("id")
                .arg("-un")
                .output()
                .expect("id -un")
                .stdout,
        )
        .expect("utf-8 user name")
        .trim()
        .to_string();
        // sshd run by root needs its privilege-separation directory, which Debian's service
        // would create at boot; it is a runtime directory, not configuration.
        if user == "root" && !Path::new("/run/sshd").is_dir() {
            std::fs::create_dir_all("/run/sshd").expect("create /run/sshd");
        }

        // The build machine's own Nix configuration: its store is a chroot store, which Nix
        // builds in its sandbox; the fixture builders need the host's tools inside it, and
        // the guest kernel and busybox that `make install-guest` unpacked (fixtures/flake).
        std::fs::create_dir_all(p("nix-conf")).expect("mkdir nix-conf");
        let sandbox_paths: Vec<&str> = [
            "/bin",
            "/usr",
            "/lib",
            "/lib64",
            "/var/cache/hephaestus/guest",
        ]
        .into_iter()
        .filter(|d| Path::new(d).exists())
        .collect();
        let group = if offline_config().contains("build-users-group = nixbld") {
            "nixbld"
        } else {
            ""
        };
        std::fs::write(
            p("nix-conf/nix.conf"),
            format!(
                "store = {}\nsandbox = true\nsandbox-paths = {}\nsubstituters =\n\
                 build-users-group = {group}\n",
                p("builder-store").display(),
                sandbox_paths.join(" ")
            ),
        )
        .expect("write the builder's nix.conf");

        let port = {
            let listener = TcpListener::bind("127.0.0.1:0").expect("a free loopback port");
            listener.local_addr().expect("port").port()
        };
        std::fs::write(
            p("sshd_config"),
            format!(
                "ListenAddress 127.0.0.1:{port}\nHostKey {host}\nAuthorizedKeysFile {keys}\n\
                 PidFile none\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n\
                 UsePAM no\nStrictModes no\nPermitRootLogin prohibit-password\n\
                 AllowUsers {user}\nSetEnv NIX_CONF_DIR={conf}\nLogLevel VERBOSE\n",
                host = p("host_key").display(),
                keys = p("authorized_keys").display(),
                conf = p("nix-conf").display(),
            ),
        )
        .expect("write sshd_config");
        let host_key = std::fs::read_to_string(p("host_key.pub")).expect("host key");
        std::fs::write(
            p("known_hosts"),
            format!("[127.0.0.1]:{port} {}", host_key.trim()),
        )
        .expect("write known_hosts");
        std::fs::write(
            p("ssh_config"),
            format!(
                "Host hephaestus-builder\n  HostName 127.0.0.1\n  Port {port}\n  User {user}\n  \
                 IdentityFile {key}\n  IdentitiesOnly yes\n  UserKnownHostsFile {known}\n  \
                 GlobalKnownHostsFile /dev/null\n  StrictHostKeyChecking yes\n  BatchMode yes\n",
                key = p("client_key").display(),
                known = p("known_hosts").display(),
            ),
        )
        .expect("write ssh_config");

        let sshd = Command::new(SSHD)
            .arg("-D")
            .arg("-f")
            .arg(p("sshd_config"))
            .arg("-E")
            .arg(p("sshd.log"))
            .stdin(Stdio::null())
            .spawn()
            .expect("start sshd");
        let mut builder = Builder { dir, sshd };
        // Readiness, not a timing assertion: the limit only turns a dead sshd into a message.
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = builder.sshd.try_wait() {
                panic!("sshd exited ({status}):\n{}", builder.sshd_log());
            }
            assert!(
                Instant::now() < deadline,
                "sshd is not listening on 127.0.0.1:{port}:\n{}",
                builder.sshd_log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        builder
    }
}

impl Drop for Builder {
    fn drop(&mut self) {
        let _ = self.sshd.kill();
        let _ = self.sshd.wait();
    }
}

/// `pipeline -v run FILE --json` in `root` with offline Nix, the builder's ssh options and a
/// fresh run directory.
fn run_remote(root: &Path, file: &Path, builder: &Builder, run_dir: &Path) -> Ran {
    let mut cmd = pipeline(root);
    cmd.env("NIX_CONFIG", offline_config())
        .env("NIX_SSHOPTS", builder.ssh_opts())
        .env("HEPHAESTUS_RUN_DIR", run_dir)
        .args(["-v", "run"])
        .arg(file)
        .arg("--json");
    run(&mut cmd)
}

/// The `nix build` command lines a `-v` run logged.
fn nix_builds(ran: &Ran) -> Vec<&str> {
    ran.stderr
        .lines()
        .filter(|l| l.contains("running nix build"))
        .collect()
}

#[test]
fn a_remote_builder_over_ssh_builds_every_image_in_one_nix_build() {
    let builder = Builder::start();
    let work = tempfile::tempdir().expect("tempdir");
    let client_store = work.path().join("client-store");
    let flake = crate::util::fixture_flake();
    let file = work.path().join("remote.yaml");
    std::fs::write(
        &file,
        format!(
            "name: remote\nprofiles: all\nflake: {flake}\n\
             builders: \"ssh-ng://hephaestus-builder x86_64-linux - 4\"\nstore: {store}\n\
             stages:\n  - evaluate\n  - build: {{max_jobs: 0}}\n  - tag\n  - verify\n",
            flake = flake.display(),
            store = client_store.display(),
        ),
    )
    .expect("write the pipeline");
    let ran = run_remote(&crate::util::repo(), &file, &builder, work.path());
    ran.expect_code(0);
    let doc = report(&ran);
    let images = doc["images"].as_array().expect("images");
    assert_eq!(images.len(), 5, "{doc:#}");

    // One `nix build` for the five images, with the settings passed straight through.
    let builds = nix_builds(&ran);
    assert_eq!(builds.len(), 1, "one nix build for every image:\n{ran}");
    for flag in [
        "--builders 'ssh-ng://hephaestus-builder x86_64-linux - 4'",
        "--max-jobs 0",
        &format!("--store {}", client_store.display()),
    ] {
        assert!(builds[0].contains(flag), "{flag} missing: {}", builds[0]);
    }
    assert_eq!(builds[0].matches(".drv").count(), 5, "{}", builds[0]);

    for image in images {
        let profile = image["profile"].as_str().expect("profile");
        assert_eq!(image["status"], "verified", "{image}");
        let store_path = image["store_path"].as_str().expect("store path");
        assert!(
            store_path.contains(&format!("-hephaestus-{profile}-image")),
            "{profile}'s result is its own image: {store_path}"
        );
        // It was built by the builder: its output is in the builder's store, which only a
        // build there fills, and Nix said so.
        let on_builder = builder.store().join(store_path.trim_start_matches('/'));
        assert!(
            on_builder.join("nixos.qcow2").is_file(),
            "{profile}: {} is not in the builder's store",
            on_builder.display()
        );
        assert!(
            ran.stderr.contains("on 'ssh-ng://hephaestus-builder'"),
            "Nix did not say it built on the builder:\n{ran}"
        );
        // And it came back here, into the pipeline's store, where verify read it.
        let here = client_store.join(store_path.trim_start_matches('/'));
        assert!(here.join("nixos.qcow2").is_file(), "{}", here.display());
    }
    let log = builder.sshd_log();
    assert!(
        log.contains("Accepted publickey") && log.contains("Starting session: command"),
        "sshd's log shows no Nix session:\n{log}"
    );
}

#[test]
fn an_ssh_builder_builds_through_nix_store_serve_too() {
    let builder = Builder::start();
    let work = tempfile::tempdir().expect("tempdir");
    let client_store = work.path().join("client-store");
    let flake = crate::util::fixture_flake();
    let file = work.path().join("remote.yaml");
    std::fs::write(
        &file,
        format!(
            "name: remote\nprofiles: [sunraku, lucy]\nflake: {flake}\nmax_jobs: 0\n\
             stages:\n  - evaluate\n  - build:\n      builders: \"ssh://hephaestus-builder x86_64-linux - 2\"\n      store: {store}\n  - tag\n  - verify\n",
            flake = flake.display(),
            store = client_store.display(),
        ),
    )
    .expect("write the pipeline");
    let ran = run_remote(&crate::util::repo(), &file, &builder, work.path());
    ran.expect_code(0)
        .stderr_has("on 'ssh://hephaestus-builder'");
    let doc = report(&ran);
    for image in doc["images"].as_array().expect("images") {
        assert_eq!(image["status"], "verified", "{image}");
        let store_path = image["store_path"].as_str().expect("store path");
        assert!(
            builder
                .store()
                .join(store_path.trim_start_matches('/'))
                .is_dir(),
            "{store_path} is not in the builder's store"
        );
    }
    let builds = nix_builds(&ran);
    assert_eq!(builds.len(), 1, "{ran}");
    assert!(builds[0].contains("--max-jobs 0"), "{}", builds[0]);
}

#[test]
fn one_failed_image_in_the_one_build_fails_only_its_own_profile() {
    let root = project(None);
    let lucy = root.path().join("profiles/lucy.yaml");
    let text = std::fs::read_to_string(&lucy).expect("lucy.yaml");
    std::fs::write(
        &lucy,
        text.replace("attribute: images.lucy", "attribute: broken.build-fails"),
    )
    .expect("write lucy.yaml");
    let run_dir = tempfile::tempdir().expect("tempdir");
    let flake = crate::util::fixture_flake();
    let mut cmd = pipeline(root.path());
    cmd.env("NIX_CONFIG", offline_config())
        .env("HEPHAESTUS_RUN_DIR", run_dir.path())
        .args(["-v", "run", "verify-all", "--json", "--flake"])
        .arg(&flake);
    let ran = run(&mut cmd);
    ran.expect_code(1);
    let doc = report(&ran);
    for image in doc["images"].as_array().expect("images") {
        if image["profile"] == "lucy" {
            assert_eq!(image["status"], "failed", "{image}");
            let error = image["error"].as_str().unwrap_or_default();
            assert!(error.contains("broken.build-fails"), "{error}");
            assert!(error.contains("deliberate build failure"), "{error}");
        } else {
            assert_eq!(image["status"], "verified", "{image}");
        }
    }
    assert!(
        nix_builds(&ran)[0].matches(".drv").count() == 5,
        "the first nix build covers every image:\n{ran}"
    );
}

#[test]
fn a_store_elsewhere_is_refused_with_the_fix() {
    let root = project(None);
    std::fs::write(
        root.path().join("pipelines/remote.yaml"),
        "name: remote\nprofiles: all\nstore: ssh-ng://builder\nstages: [evaluate, build]\n",
    )
    .expect("write the pipeline");
    let mut cmd = pipeline(root.path());
    cmd.args(["validate", "remote"]);
    run(&mut cmd)
        .expect_code(2)
        .stderr_has("store `ssh-ng://builder` is not on this machine")
        .stderr_has("list them in `builders`");
}
