//! The NAR hash of a store path, recomputed from the files and compared with the `narHash`
//! Nix registered when it built them.
//!
//! A NAR (Nix ARchive) is Nix's canonical serialisation of a file tree: only the type, the
//! executable bit, symlink targets, names (sorted bytewise) and contents count, so the hash
//! does not depend on timestamps or the file system. Format (Eelco Dolstra's thesis, fig. 5.2,
//! and `src/libutil/archive.cc`): every string is a little-endian u64 length, the bytes, then
//! zero padding to a multiple of 8.
//!
//! Files are streamed into SHA-256 ([`std::io::copy`] through a hashing writer), never loaded
//! whole. `narHash` comes as `sha256:<nix-base32>` (Nix 2.8) or SRI `sha256-<base64>` (newer
//! Nix); both are decoded by [`crate::nix::NarHash`], which owns every notation of it.

use crate::image::hex;
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::fmt;
use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// A store path's NAR hash and size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ComputedNar {
    /// SHA-256 of the NAR serialisation.
    pub sha256: [u8; 32],
    /// Length of the NAR serialisation (Nix's `narSize`).
    pub nar_size: u64,
}

impl ComputedNar {
    /// `sha256:<nix-base32>`, as Nix 2.8's `path-info --json` prints it.
    pub fn to_nix32(&self) -> String {
        format!("sha256:{}", crate::nix::encode_nix_base32(&self.sha256))
    }

    /// SRI form `sha256-<base64>`, as newer Nix prints it.
    pub fn to_sri(&self) -> String {
        format!("sha256-{}", crate::nix::encode_base64(&self.sha256))
    }

    /// Lower-case hex of the digest.
    pub fn to_hex(&self) -> String {
        hex(&self.sha256)
    }

    /// Formats the hash the way `like` is written (SRI or `sha256:`), so a mismatch shows two
    /// comparable strings.
    pub fn format_like(&self, like: &str) -> String {
        if like.starts_with("sha256-") {
            self.to_sri()
        } else if like.len() == "sha256:".len() + 64 {
            format!("sha256:{}", self.to_hex())
        } else {
            self.to_nix32()
        }
    }
}

impl fmt::Display for ComputedNar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_sri())
    }
}

impl Serialize for ComputedNar {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct("ComputedNar", 2)?;
        st.serialize_field("nar_hash", &self.to_sri())?;
        st.serialize_field("nar_size", &self.nar_size)?;
        st.end()
    }
}

/// A store output an image must match: where it is on this machine and the `narHash` Nix
/// registered for it.
#[derive(Debug, Clone)]
pub struct StoreOutput {
    /// The output (a store path, or a copy of one).
    pub path: PathBuf,
    /// The hash Nix registered for it.
    pub nar_hash: crate::nix::NarHash,
}

/// Hashing a store path or comparing its hash failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file or directory could not be read.
    #[error("cannot {what} {}", path.display())]
    Io {
        /// What was being done ("read", "list", …).
        what: &'static str,
        /// Which path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// Not a regular file, directory or symlink.
    #[error("{} is neither a regular file, a directory nor a symlink, so it has no NAR form", .0.display())]
    UnsupportedFileType(PathBuf),
    /// A file's length changed while it was being hashed.
    #[error("{} changed size while it was being hashed ({expected} bytes, then {read})", path.display())]
    Changed {
        /// The file.
        path: PathBuf,
        /// Size from its metadata.
        expected: u64,
        /// Bytes read.
        read: u64,
    },
    /// The expected hash is not a sha256 NAR hash.
    #[error("{text:?} is not a sha256 NAR hash ({reason}); expected sha256:<nix-base32>, sha256:<hex> or sha256-<base64>")]
    BadHash {
        /// The text given.
        text: String,
        /// Why.
        reason: &'static str,
    },
    /// The recomputed hash differs from Nix's.
    #[error(
        "{}: NAR hash is {actual}, but Nix registered {expected}; the store path was modified \
         after it was built (or the store is damaged), so it is not the image Nix built; check \
         it with `nix-store --verify-path` and rebuild it",
        path.display()
    )]
    Mismatch {
        /// The store path.
        path: PathBuf,
        /// Nix's narHash, as given.
        expected: String,
        /// Ours, in the same notation.
        actual: String,
    },
}

/// A writer that only hashes and counts.
struct HashWriter {
    hasher: Sha256,
    len: u64,
}

impl Write for HashWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.hasher.update(buf);
        self.len += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Writes the NAR serialisation of `path` (not following it if it is a symlink) to `out` and
/// returns its length.
pub fn dump(path: &Path, out: &mut impl Write) -> Result<u64, Error> {
    dump_tapped(path, out, &mut None)
}

/// Hands the contents of one file inside a store path to a consumer while the NAR is written,
/// so a store output and the image file inside it are both hashed in one read of the image.
pub struct Tap<'a> {
    /// The file whose contents are handed over (a path under the dumped path).
    pub file: &'a Path,
    /// Receives the file's contents in order, in chunks of up to 2 MiB.
    pub feed: &'a mut dyn FnMut(bytes::Bytes) -> io::Result<()>,
    /// Set once the file was met and fully fed.
    pub fed: bool,
}

/// Chunk size when a file is tapped: large enough to amortise the hashers' hand-offs.
const TAP_CHUNK: usize = 2 << 20;

fn dump_tapped(path: &Path, out: &mut impl Write, tap: &mut Option<Tap<'_>>) -> Result<u64, Error> {
    let mut w = CountingWriter { inner: out, len: 0 };
    let io_err = |e| Error::Io {
        what: "write the NAR of",
        path: path.to_path_buf(),
        source: e,
    };
    put_str(&mut w, b"nix-archive-1").map_err(io_err)?;
    put_node(&mut w, path, tap)?;
    Ok(w.len)
}

struct CountingWriter<'a, W: Write> {
    inner: &'a mut W,
    len: u64,
}

impl<W: Write> Write for CountingWriter<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.len += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

fn put_pad(w: &mut impl Write, len: u64) -> io::Result<()> {
    let pad = (8 - len % 8) % 8;
    w.write_all(&[0u8; 8][..pad as usize])
}

fn put_str(w: &mut impl Write, s: &[u8]) -> io::Result<()> {
    w.write_all(&(s.len() as u64).to_le_bytes())?;
    w.write_all(s)?;
    put_pad(w, s.len() as u64)
}

fn put_strs(w: &mut impl Write, strs: &[&[u8]]) -> io::Result<()> {
    strs.iter().try_for_each(|s| put_str(w, s))
}

fn put_node(w: &mut impl Write, path: &Path, tap: &mut Option<Tap<'_>>) -> Result<(), Error> {
    let err = |what: &'static str| {
        let path = path.to_path_buf();
        move |source| Error::Io { what, path, source }
    };
    let meta = fs::symlink_metadata(path).map_err(err("read the metadata of"))?;
    let ft = meta.file_type();
    let werr = err("write the NAR of");
    if ft.is_symlink() {
        let target = fs::read_link(path).map_err(err("read the symlink"))?;
        put_strs(
            w,
            &[
                b"(",
                b"type",
                b"symlink",
                b"target",
                target.as_os_str().as_bytes(),
                b")",
            ],
        )
        .map_err(werr)?;
    } else if ft.is_file() {
        put_strs(w, &[b"(", b"type", b"regular"]).map_err(err("write the NAR of"))?;
        // Nix records only the owner's execute bit.
        if meta.permissions().mode() & 0o100 != 0 {
            put_strs(w, &[b"executable", b""]).map_err(err("write the NAR of"))?;
        }
        put_str(w, b"contents").map_err(err("write the NAR of"))?;
        let size = meta.len();
        w.write_all(&size.to_le_bytes())
            .map_err(err("write the NAR of"))?;
        let file = File::open(path).map_err(err("open"))?;
        let copied = match tap.as_mut().filter(|t| t.file == path) {
            Some(t) => {
                let n = copy_tapped(file, size, w, t.feed).map_err(err("read"))?;
                t.fed = true;
                n
            }
            None => io::copy(&mut io::Read::take(file, size), w).map_err(err("read"))?,
        };
        if copied != size {
            return Err(Error::Changed {
                path: path.to_path_buf(),
                expected: size,
                read: copied,
            });
        }
        put_pad(w, size).map_err(err("write the NAR of"))?;
        put_str(w, b")").map_err(werr)?;
    } else if ft.is_dir() {
        put_strs(w, &[b"(", b"type", b"directory"]).map_err(err("write the NAR of"))?;
        let mut names = fs::read_dir(path)
            .map_err(err("list"))?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(err("list"))?;
        // NAR orders entries by their bytes, whatever the locale.
        names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        for name in names {
            put_strs(w, &[b"entry", b"(", b"name", name.as_bytes(), b"node"])
                .map_err(err("write the NAR of"))?;
            put_node(w, &path.join(&name), tap)?;
            put_str(w, b")").map_err(err("write the NAR of"))?;
        }
        put_str(w, b")").map_err(werr)?;
    } else {
        return Err(Error::UnsupportedFileType(path.to_path_buf()));
    }
    Ok(())
}

/// Copies `size` bytes of `file` to `w`, handing each chunk to `feed` as well.
fn copy_tapped(
    mut file: File,
    size: u64,
    w: &mut impl Write,
    feed: &mut dyn FnMut(bytes::Bytes) -> io::Result<()>,
) -> io::Result<u64> {
    use std::io::Read;
    let mut copied = 0u64;
    while copied < size {
        let want = usize::try_from((size - copied).min(TAP_CHUNK as u64)).unwrap_or(TAP_CHUNK);
        let mut buf = vec![0u8; want];
        let mut filled = 0;
        while filled < want {
            match file.read(&mut buf[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        if filled == 0 {
            break;
        }
        buf.truncate(filled);
        w.write_all(&buf)?;
        copied += filled as u64;
        feed(bytes::Bytes::from(buf))?;
    }
    Ok(copied)
}

/// Recomputes the NAR hash and size of `path` (a store path: a file, a directory or a symlink).
pub fn nar_hash(path: &Path) -> Result<ComputedNar, Error> {
    nar_hash_tapped(path, &mut None)
}

/// [`nar_hash`], handing the contents of `tap.file` to `tap.feed` in the same read.
pub fn nar_hash_tapped(path: &Path, tap: &mut Option<Tap<'_>>) -> Result<ComputedNar, Error> {
    let mut w = HashWriter {
        hasher: Sha256::new(),
        len: 0,
    };
    dump_tapped(path, &mut w, tap)?;
    let mut sha256 = [0u8; 32];
    sha256.copy_from_slice(&w.hasher.finalize());
    Ok(ComputedNar {
        sha256,
        nar_size: w.len,
    })
}

/// Recomputes the NAR hash of `path` and compares it with Nix's registered `expected`
/// (`sha256:<nix-base32>`, `sha256:<hex>` or `sha256-<base64>`).
pub fn verify(path: &Path, expected: &str) -> Result<ComputedNar, Error> {
    let expected = crate::nix::NarHash::new(expected).map_err(|_| Error::BadHash {
        text: expected.to_string(),
        reason: "not a sha256 in nix-base32, hex or base64",
    })?;
    verify_tapped(path, &expected, &mut None)
}

/// Recomputes the NAR hash of `path` and compares it with Nix's registered `expected`,
/// handing the contents of `tap.file` to `tap.feed` in the same read.
pub fn verify_tapped(
    path: &Path,
    expected: &crate::nix::NarHash,
    tap: &mut Option<Tap<'_>>,
) -> Result<ComputedNar, Error> {
    let got = nar_hash_tapped(path, tap)?;
    if got.sha256 != expected.digest() {
        return Err(Error::Mismatch {
            path: path.to_path_buf(),
            expected: expected.as_str().to_string(),
            actual: got.format_like(expected.as_str()),
        });
    }
    Ok(got)
}

/// Decodes a sha256 hash written as `sha256:<nix-base32>`, `sha256:<hex>` or SRI
/// `sha256-<base64>` (the notations are [`crate::nix::NarHash`]'s).
pub fn parse_sha256(text: &str) -> Result<[u8; 32], Error> {
    crate::nix::NarHash::new(text)
        .map(|h| h.digest())
        .map_err(|_| Error::BadHash {
            text: text.to_string(),
            reason: "not a sha256 in nix-base32, hex or base64",
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    /// sha256("") in the notations Nix prints.
    const EMPTY_HEX: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
    const EMPTY_NIX32: &str = "0mdqa9w1p6cmli6976v4wi0sw9r4p5prkj7lzfd1877wk11c9c73";
    const EMPTY_SRI: &str = "sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=";

    #[test]
    fn parses_every_notation_to_the_same_bytes() {
        let a = parse_sha256(&format!("sha256:{EMPTY_NIX32}")).unwrap();
        let b = parse_sha256(&format!("sha256:{EMPTY_HEX}")).unwrap();
        let c = parse_sha256(EMPTY_SRI).unwrap();
        assert_eq!(a, b);
        assert_eq!(b, c);
        assert!(parse_sha256("md5:abc").is_err());
        assert!(parse_sha256("sha256:abc").is_err());
    }

    /// The NAR of a file holding "hello\n", spelled out field by field.
    #[test]
    fn regular_file_nar_bytes_match_the_format() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("hello");
        fs::write(&f, "hello\n").unwrap();
        fs::set_permissions(&f, fs::Permissions::from_mode(0o444)).unwrap();
        let mut out = Vec::new();
        let len = dump(&f, &mut out).unwrap();
        let mut want = Vec::new();
        for s in ["nix-archive-1", "(", "type", "regular", "contents"] {
            want.extend_from_slice(&(s.len() as u64).to_le_bytes());
            want.extend_from_slice(s.as_bytes());
            want.resize(want.len().div_ceil(8) * 8, 0);
        }
        want.extend_from_slice(&6u64.to_le_bytes());
        want.extend_from_slice(b"hello\n\0\0");
        want.extend_from_slice(&1u64.to_le_bytes());
        want.extend_from_slice(b")\0\0\0\0\0\0\0");
        assert_eq!(out, want);
        assert_eq!(len, want.len() as u64);
        assert_eq!(nar_hash(&f).unwrap().nar_size, want.len() as u64);
    }

    #[test]
    fn directory_entries_are_sorted_and_kinds_recorded() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("out");
        fs::create_dir(&root).unwrap();
        fs::write(root.join("b"), "x").unwrap();
        fs::write(root.join("a"), "").unwrap();
        fs::set_permissions(root.join("a"), fs::Permissions::from_mode(0o555)).unwrap();
        symlink("b", root.join("c")).unwrap();
        let mut out = Vec::new();
        dump(&root, &mut out).unwrap();
        let text: Vec<u8> = out
            .iter()
            .copied()
            .filter(|b| b.is_ascii_graphic())
            .collect();
        let text = String::from_utf8(text).unwrap();
        assert_eq!(
            text,
            "nix-archive-1(typedirectory\
             entry(nameanode(typeregularexecutablecontents))\
             entry(namebnode(typeregularcontentsx))\
             entry(namecnode(typesymlinktargetb)))"
        );
    }

    #[test]
    fn verify_reports_both_hashes_in_the_given_notation() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("f");
        fs::write(&f, "x").unwrap();
        let h = nar_hash(&f).unwrap();
        verify(&f, &h.to_nix32()).unwrap();
        verify(&f, &h.to_sri()).unwrap();
        let err = verify(&f, EMPTY_SRI).unwrap_err().to_string();
        assert!(
            err.contains(EMPTY_SRI) && err.contains(&h.to_sri()),
            "{err}"
        );
    }
}
