//! The OpenStack config drive a boot check attaches: what Nova gives a new instance when
//! `force_config_drive` is set, so the image must find its host name, key and user-data there.
//!
//! Layout, as Nova writes it and as cloud-init's ConfigDrive datasource reads it: an ISO9660
//! file system (Rock Ridge and Joliet) with the volume label `config-2`, holding
//! `openstack/latest/meta_data.json`, `user_data`, `vendor_data.json` and
//! `network_data.json`. Every boot gets its own drive with a fresh random host name, so an
//! image that shows `<that host name> login:` can only have read it from this drive.
//!
//! The ISO is made by `xorriso -as mkisofs` (Debian's xorriso), else `genisoimage` (what Nova
//! itself runs), in the boot's run directory.

use serde::Serialize;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::Stdio;

/// The volume label Nova gives a config drive and cloud-init looks for.
pub const LABEL: &str = "config-2";

/// The programs tried, in order, with the arguments that make an ISO9660 + Rock Ridge + Joliet
/// image labelled [`LABEL`].
const TOOLS: &[(&str, &[&str])] = &[
    (
        "xorriso",
        &["-as", "mkisofs", "-quiet", "-J", "-r", "-V", LABEL],
    ),
    ("genisoimage", &["-quiet", "-J", "-r", "-V", LABEL]),
];

/// What the guest is told about itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Identity {
    /// The host name, random per boot: `heph-` and 10 hex digits (a valid DNS label).
    pub hostname: String,
    /// The instance's display name.
    pub name: String,
    /// The instance uuid (version 4).
    pub uuid: String,
    /// A throwaway public key: nothing holds its private half.
    pub public_key: String,
}

impl Identity {
    /// A fresh random identity.
    pub fn random() -> Result<Identity, std::io::Error> {
        let mut bytes = [0u8; 53];
        random_bytes(&mut bytes)?;
        let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
        let suffix = &hex(&bytes[..5]);
        let mut u = [0u8; 16];
        u.copy_from_slice(&bytes[5..21]);
        u[6] = (u[6] & 0x0f) | 0x40;
        u[8] = (u[8] & 0x3f) | 0x80;
        let u = hex(&u);
        Ok(Identity {
            hostname: format!("heph-{suffix}"),
            name: format!("hephaestus-boot-check-{suffix}"),
            uuid: format!(
                "{}-{}-{}-{}-{}",
                &u[..8],
                &u[8..12],
                &u[12..16],
                &u[16..20],
                &u[20..]
            ),
            public_key: throwaway_key(&bytes[21..53], suffix),
        })
    }

    /// `openstack/latest/meta_data.json`, with the keys Nova writes that guests read.
    pub fn meta_data(&self) -> serde_json::Value {
        json!({
            "uuid": self.uuid,
            "name": self.name,
            "hostname": self.hostname,
            "launch_index": 0,
            "availability_zone": "nova",
            "project_id": "hephaestus-boot-check",
            "public_keys": { "boot-check": self.public_key },
            "keys": [{ "name": "boot-check", "type": "ssh", "data": self.public_key }],
            "meta": {},
            "devices": [],
        })
    }

    /// `openstack/latest/user_data`: a cloud-config that changes nothing. It is there because
    /// guests have failed without one (nixpkgs #126127).
    pub fn user_data(&self) -> String {
        format!(
            "#cloud-config\n# hephaestus boot check of instance {}: nothing to do\n",
            self.uuid
        )
    }
}

/// An `ssh-ed25519` public key in OpenSSH's format built from 32 random bytes: well-formed
/// for any parser, and useless, since no one has the private key.
fn throwaway_key(random: &[u8], comment: &str) -> String {
    let mut blob = Vec::with_capacity(51);
    for part in [b"ssh-ed25519".as_slice(), random] {
        blob.extend_from_slice(&(part.len() as u32).to_be_bytes());
        blob.extend_from_slice(part);
    }
    format!("ssh-ed25519 {} boot-check-{comment}", base64(&blob))
}

fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i)) as usize & 63]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The kernel's random bytes; no crate is needed for a few dozen of them.
fn random_bytes(buf: &mut [u8]) -> Result<(), std::io::Error> {
    use std::io::Read;
    std::fs::File::open("/dev/urandom")?.read_exact(buf)
}

/// A config drive made for one boot.
#[derive(Debug, Clone, Serialize)]
pub struct ConfigDrive {
    /// The ISO image.
    pub iso: PathBuf,
    /// What it tells the guest.
    pub identity: Identity,
}

/// Why a config drive could not be made.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Neither xorriso nor genisoimage is installed.
    #[error(
        "cannot make a config drive: neither xorriso nor genisoimage can be run; install \
         xorriso with `make install-boot`, or set `metadata: none` to boot without one"
    )]
    ToolMissing,
    /// The random identity could not be drawn.
    #[error("cannot read random bytes for the config drive's identity")]
    Random(#[source] std::io::Error),
    /// A file of the drive could not be written.
    #[error("cannot write {}", path.display())]
    Write {
        /// The path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The ISO tool failed.
    #[error("making the config drive failed: `{argv}` exited with {status}; stderr: {stderr}")]
    Tool {
        /// The command line.
        argv: String,
        /// Its exit status.
        status: String,
        /// The last lines of its stderr.
        stderr: String,
    },
}

/// Writes the drive's files under `dir/config-drive/` and makes `dir/config-drive.iso`.
pub async fn build(dir: &Path) -> Result<ConfigDrive, Error> {
    let identity = Identity::random().map_err(Error::Random)?;
    let tree = dir.join("config-drive");
    let latest = tree.join("openstack").join("latest");
    let write = |path: PathBuf, text: String| {
        std::fs::write(&path, text).map_err(|source| Error::Write { path, source })
    };
    // A drive left by an earlier boot in the same directory must not leak into this one.
    if tree.exists() {
        std::fs::remove_dir_all(&tree).map_err(|source| Error::Write {
            path: tree.clone(),
            source,
        })?;
    }
    std::fs::create_dir_all(&latest).map_err(|source| Error::Write {
        path: latest.clone(),
        source,
    })?;
    write(
        latest.join("meta_data.json"),
        identity.meta_data().to_string(),
    )?;
    write(latest.join("user_data"), identity.user_data())?;
    write(latest.join("vendor_data.json"), "{}".into())?;
    write(
        latest.join("network_data.json"),
        json!({ "links": [], "networks": [], "services": [] }).to_string(),
    )?;
    let iso = dir.join("config-drive.iso");
    for (program, args) in TOOLS {
        let mut cmd = tokio::process::Command::new(program);
        cmd.args(*args)
            .arg("-o")
            .arg(&iso)
            .arg(&tree)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let out = match cmd.output().await {
            Ok(out) => out,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => {
                return Err(Error::Tool {
                    argv: argv_of(program, args, &iso, &tree),
                    status: "not started".into(),
                    stderr: e.to_string(),
                })
            }
        };
        if !out.status.success() {
            return Err(Error::Tool {
                argv: argv_of(program, args, &iso, &tree),
                status: out.status.to_string(),
                stderr: super::serial::tail_lines(&out.stderr, 5).join(" / "),
            });
        }
        return Ok(ConfigDrive { iso, identity });
    }
    Err(Error::ToolMissing)
}

fn argv_of(program: &str, args: &[&str], iso: &Path, tree: &Path) -> String {
    let mut a = vec![program.to_owned()];
    a.extend(args.iter().map(|s| (*s).to_owned()));
    a.extend(["-o".into(), iso.display().to_string()]);
    a.push(tree.display().to_string());
    a.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identities_are_fresh_and_well_formed() {
        let a = Identity::random().unwrap();
        let b = Identity::random().unwrap();
        assert_ne!(a.hostname, b.hostname);
        assert_ne!(a.uuid, b.uuid);
        let host = regex::Regex::new(r"^heph-[0-9a-f]{10}$").unwrap();
        assert!(host.is_match(&a.hostname), "{}", a.hostname);
        let uuid = regex::Regex::new(
            r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$",
        )
        .unwrap();
        assert!(uuid.is_match(&a.uuid), "{}", a.uuid);
        let meta = a.meta_data();
        assert_eq!(meta["hostname"], a.hostname.as_str());
        assert_eq!(meta["uuid"], a.uuid.as_str());
        assert_eq!(meta["public_keys"]["boot-check"], a.public_key.as_str());
        assert!(a.user_data().starts_with("#cloud-config\n"));
    }

    #[test]
    fn the_throwaway_key_is_an_openssh_ed25519_key() {
        let key = throwaway_key(&[7u8; 32], "x");
        let blob = key.split(' ').nth(1).unwrap();
        // 4 + 11 + 4 + 32 = 51 bytes: 68 base64 characters, the length of every ed25519 key.
        assert_eq!(blob.len(), 68, "{key}");
        assert!(blob.starts_with("AAAAC3NzaC1lZDI1NTE5AAAAI"), "{key}");
        assert_eq!(base64(b"hello"), "aGVsbG8=");
        assert_eq!(base64(b"hi!"), "aGkh");
    }
}
