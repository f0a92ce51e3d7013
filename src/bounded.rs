//! Reading small input files with a bound: a file a user or a build hands the pipeline
//! (pipeline, profile, policy, clouds.yaml, image-info.json) must be a regular file no larger
//! than a documented limit. A FIFO, a device (`/dev/zero`), a directory or a symlink to one is
//! refused before a byte is read, so nothing is read for ever or into unbounded memory.

use std::io::Read;
use std::path::Path;

/// Largest pipeline, profile, policy or clouds.yaml file read (1 MiB; real ones are a few KiB).
pub const MAX_CONFIG_BYTES: u64 = 1 << 20;
/// Largest `image-info.json` read (1 MiB).
pub const MAX_IMAGE_INFO_BYTES: u64 = 1 << 20;

/// Why a bounded file was not read.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Not a regular file (after following symlinks).
    #[error("is not a regular file (it is {0}); only regular files are read")]
    NotRegular(&'static str),
    /// Larger than the limit.
    #[error("is {size} bytes, more than the limit of {limit} bytes for such a file")]
    TooLarge {
        /// Its size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// Not UTF-8 text.
    #[error("is not UTF-8 text")]
    NotText,
    /// The I/O failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

fn kind_of(meta: &std::fs::Metadata) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    let t = meta.file_type();
    if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else if t.is_socket() {
        "a socket"
    } else {
        "not a regular file"
    }
}

/// The bytes of `path`, a regular file of at most `limit` bytes.
pub fn read(path: &Path, limit: u64) -> Result<Vec<u8>, Error> {
    let meta = std::fs::metadata(path)?;
    if !meta.is_file() {
        return Err(Error::NotRegular(kind_of(&meta)));
    }
    if meta.len() > limit {
        return Err(Error::TooLarge {
            size: meta.len(),
            limit,
        });
    }
    // The file may grow between the check and the read: never take more than the limit.
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    std::fs::File::open(path)?
        .take(limit + 1)
        .read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(Error::TooLarge {
            size: bytes.len() as u64,
            limit,
        });
    }
    Ok(bytes)
}

/// The text of `path`, a regular UTF-8 file of at most `limit` bytes.
pub fn read_text(path: &Path, limit: u64) -> Result<String, Error> {
    String::from_utf8(read(path, limit)?).map_err(|_| Error::NotText)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_fifos_directories_and_large_files_are_refused_before_reading() {
        let dir = tempfile::tempdir().unwrap();
        let zero = dir.path().join("zero.yaml");
        std::os::unix::fs::symlink("/dev/zero", &zero).unwrap();
        assert!(matches!(
            read_text(&zero, MAX_CONFIG_BYTES),
            Err(Error::NotRegular("a character device"))
        ));
        assert!(matches!(
            read_text(dir.path(), MAX_CONFIG_BYTES),
            Err(Error::NotRegular("a directory"))
        ));
        let fifo = dir.path().join("fifo.yaml");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(made.success());
        assert!(matches!(
            read_text(&fifo, MAX_CONFIG_BYTES),
            Err(Error::NotRegular("a FIFO"))
        ));
        let big = dir.path().join("big.yaml");
        std::fs::write(&big, vec![b'a'; 2048]).unwrap();
        assert!(matches!(
            read_text(&big, 1024),
            Err(Error::TooLarge {
                size: 2048,
                limit: 1024
            })
        ));
        let ok = dir.path().join("ok.yaml");
        std::fs::write(&ok, "name: lucy\n").unwrap();
        assert_eq!(read_text(&ok, 1024).unwrap(), "name: lucy\n");
        std::fs::write(&ok, [0xff, 0xfe]).unwrap();
        assert!(matches!(read_text(&ok, 1024), Err(Error::NotText)));
    }
}
