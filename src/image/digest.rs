//! File digests (size, md5, sha256, sha512) computed in one read of the bytes.
//!
//! In [`MultiHasher`] each algorithm runs on its own thread, so the three together cost about
//! as much wall time as sha512 alone. Chunks travel as shared [`Bytes`] (no copies) through
//! bounded channels, so a hasher that falls behind slows the producer down instead of letting
//! memory grow. [`SerialHasher`] computes the same digests on the caller's thread, for a
//! machine whose few CPUs are better left to the upload's peer (`super::stream::Hashing`).

use bytes::Bytes;
use md5::Md5;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256, Sha512};
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;
use tokio::sync::mpsc;

/// Chunk size of [`digest_file`]: large enough to amortise the channel hops.
pub const CHUNK: usize = 2 << 20;
/// Chunks a hasher may lag behind the producer; memory stays below (this + 2) chunks.
const QUEUE: usize = 4;

/// Size and hex digests of one byte stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Digests {
    /// Number of bytes.
    pub size: u64,
    /// MD5, lower-case hex (Glance's legacy `checksum`).
    pub md5: String,
    /// SHA-256, lower-case hex.
    pub sha256: String,
    /// SHA-512, lower-case hex (Glance's default `os_hash_value`).
    pub sha512: String,
}

/// Hashing failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file could not be read.
    #[error("cannot read {} to compute its digests", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// A hasher thread could not be started.
    #[error("cannot start a hashing thread")]
    Spawn(#[source] io::Error),
    /// A hasher thread ended before the stream did (it panicked).
    #[error("the {0} hashing thread stopped unexpectedly")]
    HasherDied(&'static str),
}

struct Lane {
    name: &'static str,
    tx: mpsc::Sender<Bytes>,
    handle: JoinHandle<String>,
}

fn lane<D: Digest + Send + 'static>(name: &'static str) -> Result<Lane, Error> {
    let (tx, mut rx) = mpsc::channel::<Bytes>(QUEUE);
    let handle = std::thread::Builder::new()
        .name(format!("hash-{name}"))
        .spawn(move || {
            let mut hasher = D::new();
            while let Some(chunk) = rx.blocking_recv() {
                hasher.update(&chunk);
            }
            crate::image::hex(&hasher.finalize())
        })
        .map_err(Error::Spawn)?;
    Ok(Lane { name, tx, handle })
}

/// Computes md5, sha256 and sha512 of the chunks it is fed, each on its own thread.
///
/// Feed it with [`MultiHasher::update`] from blocking code or [`MultiHasher::update_async`]
/// from async code (the blocking one must not be called on an async runtime thread), then call
/// [`MultiHasher::finish`].
pub struct MultiHasher {
    size: u64,
    lanes: Vec<Lane>,
}

impl MultiHasher {
    /// Starts the three hashing threads.
    pub fn new() -> Result<MultiHasher, Error> {
        Ok(MultiHasher {
            size: 0,
            lanes: vec![
                lane::<Md5>("md5")?,
                lane::<Sha256>("sha256")?,
                lane::<Sha512>("sha512")?,
            ],
        })
    }

    /// Bytes fed so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Feeds one chunk, waiting while a hasher is a few chunks behind (bounded memory).
    pub fn update(&mut self, chunk: Bytes) -> Result<(), Error> {
        self.size += chunk.len() as u64;
        for lane in &self.lanes {
            lane.tx
                .blocking_send(chunk.clone())
                .map_err(|_| Error::HasherDied(lane.name))?;
        }
        Ok(())
    }

    /// Feeds one chunk from async code, yielding while a hasher is behind.
    pub async fn update_async(&mut self, chunk: Bytes) -> Result<(), Error> {
        self.size += chunk.len() as u64;
        for lane in &self.lanes {
            lane.tx
                .send(chunk.clone())
                .await
                .map_err(|_| Error::HasherDied(lane.name))?;
        }
        Ok(())
    }

    /// Ends the stream and waits for the digests (blocks while the hashers catch up; from
    /// async code call it in `spawn_blocking`).
    pub fn finish(self) -> Result<Digests, Error> {
        let mut hexes = Vec::with_capacity(3);
        for Lane { name, tx, handle } in self.lanes {
            // Closing the channel is what ends the thread's loop.
            drop(tx);
            hexes.push(handle.join().map_err(|_| Error::HasherDied(name))?);
        }
        let mut hexes = hexes.into_iter();
        let mut next = || hexes.next().unwrap_or_default();
        Ok(Digests {
            size: self.size,
            md5: next(),
            sha256: next(),
            sha512: next(),
        })
    }
}

/// Computes md5, sha256 and sha512 of the bytes it is fed, on the calling thread.
///
/// For a reader whose bytes go somewhere slower than one core hashes them (an upload): one
/// thread busy with all three leaves the other cores to whatever the bytes are waiting for,
/// where [`MultiHasher`]'s three threads would compete with it.
#[derive(Default)]
pub struct SerialHasher {
    size: u64,
    md5: Md5,
    sha256: Sha256,
    sha512: Sha512,
}

impl SerialHasher {
    /// Feeds bytes.
    pub fn update(&mut self, bytes: &[u8]) {
        self.size += bytes.len() as u64;
        self.md5.update(bytes);
        self.sha256.update(bytes);
        self.sha512.update(bytes);
    }

    /// The size and digests of everything fed.
    pub fn finish(self) -> Digests {
        Digests {
            size: self.size,
            md5: crate::image::hex(&self.md5.finalize()),
            sha256: crate::image::hex(&self.sha256.finalize()),
            sha512: crate::image::hex(&self.sha512.finalize()),
        }
    }
}

/// Reads `path` once, in [`CHUNK`]-sized pieces, and returns its size and digests.
pub fn digest_file(path: &Path) -> Result<Digests, Error> {
    let read_err = |source| Error::Read {
        path: path.to_path_buf(),
        source,
    };
    let mut file = File::open(path).map_err(read_err)?;
    let mut hasher = MultiHasher::new()?;
    loop {
        let mut buf = vec![0u8; CHUNK];
        let mut filled = 0;
        // Fill whole chunks so the per-chunk cost stays amortised on short reads.
        while filled < CHUNK {
            match file.read(&mut buf[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(read_err(e)),
            }
        }
        if filled == 0 {
            break;
        }
        buf.truncate(filled);
        hasher.update(Bytes::from(buf))?;
        if filled < CHUNK {
            break;
        }
    }
    hasher.finish()
}

/// The sha256 alone of `path`, read once in [`CHUNK`]-sized blocks (the boot check's
/// before/after comparison, which needs no other digest).
pub fn sha256_file(path: &Path) -> io::Result<String> {
    let mut file = File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; CHUNK];
    loop {
        match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => hasher.update(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(crate::image::hex(&hasher.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digests_of(parts: &[&[u8]]) -> Digests {
        let mut h = MultiHasher::new().unwrap();
        for p in parts {
            h.update(Bytes::copy_from_slice(p)).unwrap();
        }
        h.finish().unwrap()
    }

    #[test]
    fn empty_input_gives_the_known_vectors() {
        let d = digests_of(&[]);
        assert_eq!(d.size, 0);
        assert_eq!(d.md5, "d41d8cd98f00b204e9800998ecf8427e");
        assert_eq!(
            d.sha256,
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            d.sha512,
            "cf83e1357eefb8bdf1542850d66d8007d620e4050b5715dc83f4a921d36ce9ce\
             47d0d13c5d85f2b0ff8318d2877eec2f63b931bd47417a81a538327af927da3e"
        );
    }

    #[test]
    fn abc_split_across_chunks_gives_the_known_vectors() {
        let d = digests_of(&[b"a", b"", b"bc"]);
        assert_eq!(d.size, 3);
        assert_eq!(d.md5, "900150983cd24fb0d6963f7d28e17f72");
        assert_eq!(
            d.sha256,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(
            d.sha512,
            "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a\
             2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f"
        );
    }

    #[test]
    fn one_thread_gives_the_digests_of_three() {
        let data: Vec<u8> = (0..CHUNK + 77).map(|i| (i % 253) as u8).collect();
        let mut serial = SerialHasher::default();
        serial.update(&data[..10]);
        serial.update(&data[10..]);
        assert_eq!(serial.finish(), digests_of(&[&data]));
    }

    #[test]
    fn async_feeding_matches_blocking_feeding() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let d = rt.block_on(async {
            let mut h = MultiHasher::new().unwrap();
            h.update_async(Bytes::from_static(b"ab")).await.unwrap();
            h.update_async(Bytes::from_static(b"c")).await.unwrap();
            tokio::task::spawn_blocking(move || h.finish())
                .await
                .unwrap()
                .unwrap()
        });
        assert_eq!(d, digests_of(&[b"abc"]));
    }

    #[test]
    fn digest_file_reads_multi_chunk_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let data: Vec<u8> = (0..CHUNK * 2 + 7).map(|i| (i % 251) as u8).collect();
        std::fs::write(&path, &data).unwrap();
        let d = digest_file(&path).unwrap();
        assert_eq!(d, digests_of(&[&data]));
        assert_eq!(d.size, data.len() as u64);
    }

    #[test]
    fn missing_file_names_the_path() {
        let err = digest_file(Path::new("does/not/exist")).unwrap_err();
        assert!(err.to_string().contains("does/not/exist"), "{err}");
    }
}
