//! The local Keystone + Glance harness (`make cloud-up`, scripts/cloud) as the cloud tests
//! use it: where its clouds.yaml is, edited copies of it, clients of its clouds, an admin view
//! of the images, each test's sandbox (prefix, pipeline copy, clean-up), the lifecycle facts
//! tests assert of an image, the harness's own `openstack` CLI as an independent client, and
//! stopping and restarting the `local` Glance for the kill test.
//!
//! A test that needs the cloud calls [`require_up`] first, which fails (never skips) with a
//! message saying to run `make cloud-up`, and holds [`shared`] (or, to stop a server,
//! [`exclusive`]) while it runs.

use std::collections::BTreeMap;
use std::future::Future;
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hephaestus::glance::{
    connect_to, CloudChoice, Glance, Hidden, Image, ImageFilter, ImageStatus, PatchOp,
};

use crate::util;

/// What to tell a person when the harness is not there.
pub const START_IT: &str = "start the local Keystone + Glance clouds with `make cloud-up`";

/// `OS_CLIENT_CONFIG_FILE` when set, else `<repo>/.run/cloud/clouds.yaml` (the harness's
/// default `CLOUD_DIR`).
pub fn clouds_yaml() -> PathBuf {
    match std::env::var_os("OS_CLIENT_CONFIG_FILE") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => util::repo().join(".run/cloud/clouds.yaml"),
    }
}

/// The harness's state directory (`CLOUD_DIR`): where clouds.yaml, env.sh and the per-cloud
/// `run/` pid files are.
pub fn cloud_dir() -> PathBuf {
    clouds_yaml()
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| util::repo().join(".run/cloud"))
}

/// Tests that use the clouds hold this shared; the test that kills Glance holds it alone, so
/// no other test of this binary sees Glance vanish under it.
static CLOUD_USE: RwLock<()> = RwLock::new(());

/// A hold on the clouds: the in-process lock, and the same as an flock on
/// `<CLOUD_DIR>/tests.lock`, so that test binaries run at the same time by other people on
/// the same harness are kept apart too. Released when dropped.
pub struct CloudUse {
    _shared: Option<RwLockReadGuard<'static, ()>>,
    _exclusive: Option<RwLockWriteGuard<'static, ()>>,
    flock: Option<Child>,
}

impl Drop for CloudUse {
    fn drop(&mut self) {
        if let Some(mut holder) = self.flock.take() {
            // Closing its stdin ends the `cat` that flock runs, which releases the lock.
            drop(holder.stdin.take());
            let _ = holder.wait();
        }
    }
}

/// A share of the clouds, for a test that only publishes and reads.
pub fn shared() -> CloudUse {
    let guard = CLOUD_USE.read().unwrap_or_else(|e| e.into_inner());
    CloudUse {
        _shared: Some(guard),
        _exclusive: None,
        flock: flock("--shared"),
    }
}

/// The clouds alone, for a test that stops a server.
pub fn exclusive() -> CloudUse {
    let guard = CLOUD_USE.write().unwrap_or_else(|e| e.into_inner());
    CloudUse {
        _shared: None,
        _exclusive: Some(guard),
        flock: flock("--exclusive"),
    }
}

/// Takes the cross-process lock with util-linux `flock` (which the harness needs anyway),
/// held by a child process for as long as it lives. `None` when the harness has no state
/// directory yet (the test then fails on the missing cloud) or `flock` cannot run.
fn flock(mode: &str) -> Option<Child> {
    let dir = cloud_dir();
    if !dir.is_dir() {
        return None;
    }
    let mut holder = Command::new("flock")
        .arg(mode)
        .arg(dir.join("tests.lock"))
        .args(["-c", "echo locked; exec cat"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let mut line = String::new();
    let locked = holder
        .stdout
        .take()
        .map(|out| BufReader::new(out).read_line(&mut line))
        .is_some_and(|read| read.is_ok() && line.trim() == "locked");
    if !locked {
        let _ = holder.kill();
        let _ = holder.wait();
        return None;
    }
    Some(holder)
}

/// A name prefix no other test or run uses.
pub fn unique_prefix(test: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() % 1_000_000_000_000)
        .unwrap_or(0);
    format!("it-{test}-{}-{nanos}", std::process::id())
}

/// The `clouds` mapping of the harness's clouds.yaml, as JSON. Panics naming `make cloud-up`
/// when the file is missing.
pub fn clouds() -> serde_json::Value {
    let file = clouds_yaml();
    let text = std::fs::read_to_string(&file)
        .unwrap_or_else(|e| panic!("cannot read {} ({e}): {START_IT}", file.display()));
    let doc: serde_json::Value = serde_saphyr::from_str(&text)
        .unwrap_or_else(|e| panic!("{} does not parse: {e}", file.display()));
    doc
}

/// Writes `dir/clouds.yaml`: the harness's file after `edit` changed its `clouds` mapping.
/// Written as JSON, which every YAML reader reads.
pub fn clouds_yaml_copy(dir: &Path, edit: impl FnOnce(&mut serde_json::Value)) -> PathBuf {
    let mut doc = clouds();
    edit(&mut doc["clouds"]);
    let path = dir.join("clouds.yaml");
    let text = serde_json::to_string_pretty(&doc).expect("clouds as JSON");
    std::fs::write(&path, text).expect("write the clouds.yaml copy");
    path
}

/// An async client of `name` of the harness's clouds.yaml, or a failure naming
/// `make cloud-up`.
pub async fn glance(name: &str) -> Glance {
    glance_with(name, &clouds_yaml()).await
}

/// An async client of `name` of the clouds.yaml `file`, or a failure naming `make cloud-up`.
pub async fn glance_with(name: &str, file: &Path) -> Glance {
    assert!(file.is_file(), "{} is missing: {START_IT}", file.display());
    let choice = CloudChoice::Named {
        name: name.to_owned(),
        file: file.to_path_buf(),
    };
    match connect_to(&choice).await {
        Ok(glance) => glance,
        Err(e) => panic!(
            "cloud {name} of {} does not answer ({}): {START_IT}",
            file.display(),
            chain(&e)
        ),
    }
}

/// A small runtime and a client of one cloud, for synchronous tests.
pub struct Cloud {
    runtime: tokio::runtime::Runtime,
    glance: Glance,
    name: String,
}

impl Cloud {
    /// Connects to `name` of the harness's clouds.yaml, or fails naming `make cloud-up`.
    pub fn connect(name: &str) -> Cloud {
        Self::connect_with(name, &clouds_yaml())
    }

    /// Connects to `name` of the clouds.yaml `file` (e.g. an edited copy).
    pub fn connect_with(name: &str, file: &Path) -> Cloud {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime");
        let glance = runtime.block_on(glance_with(name, file));
        Cloud {
            runtime,
            glance,
            name: name.to_owned(),
        }
    }

    /// Runs a call of the client to completion.
    pub fn call<'a, T, F>(&'a self, f: impl FnOnce(&'a Glance) -> F) -> T
    where
        F: Future<Output = T> + 'a,
    {
        self.runtime.block_on(f(&self.glance))
    }

    /// Runs a read-only call, trying again a few times when it fails transiently (a
    /// keep-alive connection the server closed, a server busy restarting); panics naming
    /// `what` otherwise.
    pub fn read<'a, T, F>(&'a self, what: &str, f: impl Fn(&'a Glance) -> F) -> T
    where
        F: Future<Output = Result<T, hephaestus::glance::Error>> + 'a,
    {
        let mut attempt = 1;
        loop {
            match self.runtime.block_on(f(&self.glance)) {
                Ok(value) => return value,
                Err(e) if e.is_transient() && attempt < 4 => {
                    eprintln!("{}: {what}: {}; trying again", self.name, chain(&e));
                    attempt += 1;
                    std::thread::sleep(Duration::from_millis(500));
                }
                Err(e) => panic!("{}: {what}: {}", self.name, chain(&e)),
            }
        }
    }

    /// The Glance address the catalog names (where a proxy forwards to).
    pub fn glance_addr(&self) -> SocketAddr {
        let base = self.glance.base_url();
        let host = base.host_str().expect("the image endpoint has a host");
        let port = base
            .port_or_known_default()
            .expect("the image endpoint has a port");
        (host, port)
            .to_socket_addrs()
            .ok()
            .and_then(|mut a| a.next())
            .unwrap_or_else(|| panic!("cannot resolve the image endpoint {base}"))
    }

    /// One image, or a panic naming it.
    pub fn image(&self, id: &str) -> Image {
        self.read(&format!("GET image {id}"), |g| g.get_image(id))
    }

    /// Every image, visible and hidden, whose name starts with `prefix`.
    pub fn images_named(&self, prefix: &str) -> Vec<Image> {
        let filter = ImageFilter {
            hidden: Hidden::Include,
            ..ImageFilter::default()
        };
        let all = self.read("listing images", |g| g.list_images(&filter));
        all.into_iter()
            .filter(|i| i.name.as_deref().is_some_and(|n| n.starts_with(prefix)))
            .collect()
    }

    /// Deletes every image whose name starts with `prefix` (best effort: test clean-up).
    pub fn delete_named(&self, prefix: &str) {
        for image in self.images_named(prefix) {
            if let Err(e) = self.call(|g| g.delete_image(&image.id)) {
                eprintln!(
                    "clean-up: deleting {} ({}): {}",
                    image.id,
                    image.display_name(),
                    chain(&e)
                );
            }
        }
    }
}

/// Deletes a test's images from its clouds when the test passed, protected ones unprotected
/// first; keeps them, and says so, when it failed.
pub struct Cleanup {
    /// The test's image name prefix.
    prefix: String,
    /// The clouds it publishes into; each is cleaned through `<cloud>-admin`, which sees
    /// hidden images too.
    clouds: &'static [&'static str],
}

impl Cleanup {
    /// Cleans the images named `prefix*` out of `clouds`.
    pub fn new(prefix: &str, clouds: &'static [&'static str]) -> Cleanup {
        Cleanup {
            prefix: prefix.to_owned(),
            clouds,
        }
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let clouds = match self.clouds {
                [one] => format!("cloud {one}"),
                many => format!("clouds {}", many.join(" and ")),
            };
            eprintln!(
                "keeping the images named {}* in {clouds} for inspection",
                self.prefix
            );
            return;
        }
        for name in self.clouds {
            let admin = Cloud::connect(&format!("{name}-admin"));
            for image in admin.images_named(&self.prefix) {
                let unprotect = [PatchOp::replace("protected", false)];
                if let Err(e) = admin.call(|g| g.update_image(&image.id, &unprotect)) {
                    eprintln!("clean-up: unprotecting {}: {}", image.id, chain(&e));
                }
            }
            admin.delete_named(&self.prefix);
        }
    }
}

/// Lets a test's own type (`struct T { sandbox: Sandbox, .. }`) be used as its [`Sandbox`]:
/// `t.prefix`, `t.dir`, `t.stable(..)`.
macro_rules! sandbox_deref {
    ($type:ty) => {
        impl std::ops::Deref for $type {
            type Target = $crate::cloud::Sandbox;

            fn deref(&self) -> &$crate::cloud::Sandbox {
                &self.sandbox
            }
        }
    };
}
pub(crate) use sandbox_deref;

/// What a test that publishes starts from: the clouds checked up, a unique image name
/// prefix, a temp dir, its pipeline copy there, and the clean-up of its images.
pub struct Sandbox {
    /// Every image of the test, and nothing else, has a name starting with this.
    pub prefix: String,
    /// The test's own directory (pipeline copy, run directory, flake copies, outputs).
    pub dir: tempfile::TempDir,
    /// The pipeline copy.
    pub pipeline: PathBuf,
    _cleanup: Cleanup,
}

impl Sandbox {
    /// Checks cloud `local` is up, then writes `copy` with the upload name
    /// `<unique prefix of test>-{profile}`; the test's images in `clouds` go when it passes.
    pub fn new(test: &str, copy: &util::PipelineCopy, clouds: &'static [&'static str]) -> Self {
        require_up();
        let prefix = unique_prefix(test);
        let dir = tempfile::tempdir().expect("tempdir");
        let pipeline = copy.write(dir.path(), &prefix);
        Sandbox {
            _cleanup: Cleanup::new(&prefix, clouds),
            prefix,
            dir,
            pipeline,
        }
    }

    /// The stable name of `profile`'s current image.
    pub fn stable(&self, profile: &str) -> String {
        format!("{}-{profile}", self.prefix)
    }

    /// A changed copy of the fixture flake in the test's directory (see
    /// [`util::changed_flake`]).
    pub fn changed_flake(&self, content: &str) -> PathBuf {
        util::changed_flake(self.dir.path(), content)
    }
}

/// Fails, naming `make cloud-up`, unless clouds.yaml is there and cloud `local` issues a token
/// and answers `GET /v2/images`.
pub fn require_up() {
    let cloud = Cloud::connect("local");
    let filter = ImageFilter {
        name: Some("it-probe-nothing-has-this-name".into()),
        ..ImageFilter::default()
    };
    if let Err(e) = cloud.call(|g| g.list_images(&filter)) {
        panic!(
            "cloud local does not answer GET /v2/images ({}): {START_IT}",
            chain(&e)
        );
    }
}

/// `err` and its sources, as `main` prints them.
pub fn chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut cur = err.source();
    while let Some(e) = cur {
        out.push_str(": ");
        out.push_str(&e.to_string());
        cur = e.source();
    }
    out
}

/// The harness's venv: `CLOUD_VENV`, else the value its env.sh exports.
pub fn venv() -> PathBuf {
    if let Some(v) = std::env::var_os("CLOUD_VENV").filter(|v| !v.is_empty()) {
        return PathBuf::from(v);
    }
    let env_sh = cloud_dir().join("env.sh");
    let text = std::fs::read_to_string(&env_sh)
        .unwrap_or_else(|e| panic!("cannot read {} ({e}): {START_IT}", env_sh.display()));
    text.lines()
        .find_map(|l| l.strip_prefix("export CLOUD_VENV="))
        .map(|v| PathBuf::from(v.trim().trim_matches('"')))
        .unwrap_or_else(|| panic!("{} does not export CLOUD_VENV", env_sh.display()))
}

/// Runs the harness venv's `openstack --os-cloud CLOUD ARGS -f json` against the harness's
/// clouds.yaml and returns its JSON output; panics with argv, status and stderr on failure.
pub fn openstack(cloud: &str, args: &[&str]) -> serde_json::Value {
    let args: Vec<&str> = args.iter().copied().chain(["-f", "json"]).collect();
    let (what, stdout) = openstack_run(cloud, &args);
    serde_json::from_slice(&stdout).unwrap_or_else(|e| {
        panic!(
            "{what} printed no JSON ({e}):\n{}",
            String::from_utf8_lossy(&stdout)
        )
    })
}

/// Runs the harness venv's `openstack --os-cloud CLOUD ARGS` against the harness's
/// clouds.yaml (e.g. `image set`, which prints nothing); returns the command and its stdout,
/// and panics with argv, status and stderr on failure.
pub fn openstack_run(cloud: &str, args: &[&str]) -> (String, Vec<u8>) {
    let program = venv().join("bin/openstack");
    let mut cmd = Command::new(&program);
    cmd.arg("--os-cloud")
        .arg(cloud)
        .args(args)
        .env("OS_CLIENT_CONFIG_FILE", clouds_yaml())
        .env_remove("OS_CLOUD");
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}: {START_IT}", program.display()));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({})\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    (format!("{cmd:?}"), out.stdout)
}

/// `openstack image show ID` in each `(cloud, id)`, in parallel (each call is a Python
/// start-up).
pub fn show_all(requests: &[(&str, &str)]) -> Vec<serde_json::Value> {
    std::thread::scope(|scope| {
        let handles: Vec<_> = requests
            .iter()
            .map(|(cloud_name, id)| {
                scope.spawn(move || openstack(cloud_name, &["image", "show", id]))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("openstack image show"))
            .collect()
    })
}

/// A field of `openstack image show -f json`: top level, else under `properties` (where the
/// client puts custom properties and Glance's `os_*` fields).
pub fn shown<'a>(image: &'a serde_json::Value, key: &str) -> Option<&'a serde_json::Value> {
    image
        .get(key)
        .or_else(|| image.get("properties").and_then(|p| p.get(key)))
}

/// A field of `openstack image show`, or null.
pub fn field(image: &serde_json::Value, key: &str) -> serde_json::Value {
    shown(image, key)
        .cloned()
        .unwrap_or(serde_json::Value::Null)
}

/// The master pid of `cloud`'s Glance from the harness's pid file, checked to be the gunicorn
/// the harness started with this `CLOUD_DIR` (as scripts/cloud/common.sh checks it).
pub fn glance_pid(cloud: &str) -> u32 {
    let dir = cloud_dir();
    let file = dir.join(cloud).join("run/glance-api.pid");
    let pid: u32 = std::fs::read_to_string(&file)
        .unwrap_or_else(|e| panic!("cannot read {} ({e}): {START_IT}", file.display()))
        .trim()
        .parse()
        .unwrap_or_else(|e| panic!("{} holds no pid: {e}", file.display()));
    let marker = format!(
        "GUNICORN_CMD_ARGS=-c {}",
        dir.join(cloud).join("etc/glance-api.gunicorn.py").display()
    );
    let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
    assert!(
        environ
            .split(|b| *b == 0)
            .any(|entry| entry == marker.as_bytes()),
        "pid {pid} of {} is not the harness's glance of cloud {cloud} (not running?): {START_IT}",
        file.display()
    );
    pid
}

/// Kills `cloud`'s Glance at once: SIGKILL to the process group of its pid-file pid (the
/// harness starts each server with `setsid`, so the group is the master and its workers, and
/// nothing else). Returns when the master is gone.
pub fn kill_glance(cloud: &str) {
    let pid = glance_pid(cloud);
    let status = Command::new("kill")
        .args(["-KILL", "--", &format!("-{pid}")])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -KILL -- -{pid}: {status}");
    // Wait until every process of the group is dead, so the port is free again. A dead
    // master may stay a zombie until init reaps it; gunicorn would take a pid file naming a
    // zombie for a running instance and refuse to start, so the stale file goes.
    let deadline = Instant::now() + Duration::from_secs(30);
    while group_alive(pid) {
        assert!(
            Instant::now() < deadline,
            "glance process group {pid} survived SIGKILL"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let file = cloud_dir().join(cloud).join("run/glance-api.pid");
    if std::fs::read_to_string(&file).is_ok_and(|p| p.trim() == pid.to_string()) {
        let _ = std::fs::remove_file(&file);
    }
}

/// Whether a process of group `pgid` is alive (zombies are not).
fn group_alive(pgid: u32) -> bool {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return false;
    };
    entries.flatten().any(|entry| {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            return false;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            return false;
        };
        // After the command name: state, ppid, pgrp.
        let Some((_, rest)) = stat.rsplit_once(')') else {
            return false;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        fields.len() > 2 && fields[0] != "Z" && fields[2] == pgid.to_string()
    })
}

/// `make cloud-up` for this `CLOUD_DIR` (idempotent: starts only what is not running).
pub fn cloud_up() {
    if let Err(e) = try_cloud_up() {
        panic!("{e}");
    }
}

/// [`cloud_up`], returning what went wrong instead of panicking (for use in `Drop`).
pub fn try_cloud_up() -> Result<(), String> {
    let out = Command::new("make")
        .arg("-C")
        .arg(util::repo())
        .arg("cloud-up")
        .arg(format!("CLOUD_DIR={}", cloud_dir().display()))
        .output()
        .map_err(|e| format!("cannot run make cloud-up: {e}"))?;
    if out.status.success() {
        return Ok(());
    }
    Err(format!(
        "make cloud-up failed ({})\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    ))
}

/// Brings the clouds back up when dropped during a panic: a test that stopped a server and
/// then failed must not leave it down for the tests after it.
pub struct RestartOnFailure;

impl Drop for RestartOnFailure {
    fn drop(&mut self) {
        if std::thread::panicking() {
            if let Err(e) = try_cloud_up() {
                eprintln!("restarting the clouds after a failed test: {e}");
            }
        }
    }
}

/// Lifecycle facts of an image, for assertion messages.
pub fn describe(image: &Image) -> String {
    let props: BTreeMap<&str, &str> = ["hephaestus_generation", "hephaestus_store_path"]
        .iter()
        .filter_map(|k| image.property(k).map(|v| (*k, v)))
        .collect();
    format!(
        "{} name={} status={} hidden={} tags={:?} {:?}",
        image.id,
        image.display_name(),
        image.status,
        image.os_hidden,
        image.tags,
        props
    )
}

/// Image `id` of `cloud_name` as it is now. A fresh client each time: an idle client's pooled
/// connection is closed by Glance while a publish or promotion runs, and the next request on
/// it would fail.
pub fn image(cloud_name: &str, id: &str) -> Image {
    Cloud::connect(cloud_name).image(id)
}

/// Whether `image` carries `tag`.
pub fn has(image: &Image, tag: &str) -> bool {
    image.tags.iter().any(|t| t == tag)
}

/// The `hephaestus_generation` of `image`, or a failure describing it.
pub fn generation(image: &Image) -> String {
    image
        .property("hephaestus_generation")
        .unwrap_or_else(|| panic!("no hephaestus_generation: {}", describe(image)))
        .to_string()
}

/// `image` is the current image named `stable`: active, visible, tagged `current` (and still
/// `hephaestus`) and no other lifecycle tag.
pub fn assert_current(image: &Image, stable: &str) {
    let facts = describe(image);
    assert_eq!(image.name.as_deref(), Some(stable), "{facts}");
    assert_eq!(image.status, ImageStatus::Active, "{facts}");
    assert!(!image.os_hidden, "the current image is visible: {facts}");
    assert!(has(image, "current"), "{facts}");
    for tag in ["candidate", "previous", "rolled-back"] {
        assert!(
            !has(image, tag),
            "the current image is not `{tag}`: {facts}"
        );
    }
    assert!(has(image, "hephaestus"), "other tags are kept: {facts}");
}

/// `image` is a kept generation of family `stable`: `<stable>-<generation>`, active (kept,
/// not deleted), hidden, not `current`, and tagged `tag` (when given) of `previous` and
/// `rolled-back`, not the other.
pub fn assert_kept(image: &Image, stable: &str, tag: Option<&str>) {
    let facts = describe(image);
    assert_eq!(
        image.name.as_deref(),
        Some(format!("{stable}-{}", generation(image)).as_str()),
        "{facts}"
    );
    assert_eq!(
        image.status,
        ImageStatus::Active,
        "kept, not deleted: {facts}"
    );
    assert!(image.os_hidden, "a kept generation is hidden: {facts}");
    assert!(!has(image, "current"), "{facts}");
    for other in ["previous", "rolled-back"] {
        assert_eq!(
            has(image, other),
            tag == Some(other),
            "tag `{other}`: {facts}"
        );
    }
}
