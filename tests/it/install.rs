//! The installers behind `make install-deps` (scripts/install-*.sh, scripts/bench/install.sh,
//! sharing scripts/apt.sh): they find what is missing first and ask for root only when apt must
//! run, so a machine that has everything passes as any user.

use crate::util::{self, Ran};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The installers `make install-deps` has run before the tests, which then only check
/// (install-ci also installs gitlab-ci-local under the caller's home, tested in `ci`).
const INSTALLERS: [&str; 3] = ["install-nix.sh", "install-boot.sh", "install-guest.sh"];

fn is_root() -> bool {
    let out = Command::new("id").arg("-u").output().expect("id -u");
    String::from_utf8_lossy(&out.stdout).trim() == "0"
}

/// A copy of scripts/ that any user can read (the checkout's own directories may not be).
fn readable_scripts() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    util::copy_tree(&util::repo().join("scripts"), dir.path());
    fn open_up(path: &Path) {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        if path.is_dir() {
            for entry in std::fs::read_dir(path).expect("read_dir") {
                open_up(&entry.expect("entry").path());
            }
        }
    }
    open_up(dir.path());
    dir
}

/// `bash script` as an unprivileged user (nobody, when the tests run as root).
fn as_user(script: &Path, path_var: Option<&str>) -> Ran {
    let mut cmd = if is_root() {
        let mut c = Command::new("/usr/bin/setpriv");
        c.args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "/bin/bash",
        ]);
        c
    } else {
        Command::new("/bin/bash")
    };
    cmd.arg(script).env("HOME", "/nonexistent");
    if let Some(p) = path_var {
        cmd.env("PATH", p);
    }
    util::run_std(&mut cmd)
}

#[test]
fn installers_pass_without_root_when_nothing_is_missing() {
    let scripts = readable_scripts();
    for name in INSTALLERS {
        let ran = as_user(&scripts.path().join(name), None);
        ran.expect_code(0);
        assert!(!ran.stderr.contains("to install them"), "{name}\n{ran}");
    }
}

#[test]
fn an_installer_missing_a_package_asks_for_root_and_names_it() {
    let scripts = readable_scripts();
    // A PATH that has what the script itself runs, but not nix, qemu-img, mformat or git.
    let bin = tempfile::tempdir().expect("tempdir");
    std::fs::set_permissions(bin.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    for tool in ["bash", "dirname", "id"] {
        let real: PathBuf = ["/usr/bin", "/bin"]
            .iter()
            .map(|d| Path::new(d).join(tool))
            .find(|p| p.exists())
            .unwrap_or_else(|| panic!("{tool} not found"));
        std::os::unix::fs::symlink(real, bin.path().join(tool)).expect("symlink");
    }
    let path = bin.path().to_str().expect("utf-8 path");
    let ran = as_user(&scripts.path().join("install-nix.sh"), Some(path));
    ran.expect_code(1)
        .stderr_has("install-nix: missing: nix-bin")
        .stderr_has("run as root to install them");
    assert!(!ran.stderr.contains("installing"), "{ran}");
}
