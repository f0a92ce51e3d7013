//! One read of an image file, hashed while it streams and fanned out to every consumer: the
//! bytes an upload sends to each cloud are the bytes the digests and the NAR hash were
//! computed on, and the file is read once however many clouds receive it.
//!
//! A reader thread walks the NAR serialisation of the store output the image lies in (so the
//! output's `narHash` is recomputed in the same read), hands each 2 MiB chunk of the image
//! file to one bounded channel per consumer and to the md5/sha256/sha512 hashers: on the
//! reader thread itself on a machine of two CPUs or fewer, a thread each on a larger one
//! ([`Hashing`], where the measurements are). Chunks are shared [`Bytes`], never copied. Every channel holds at most
//! [`QUEUE`] chunks, so the slowest consumer (a hasher or a cloud) sets the pace and memory
//! stays bounded whatever the file's size. Nothing here runs on the async threads: the HTTP
//! client only pulls ready chunks out of a channel.
//!
//! A consumer that stops (its cloud failed) is dropped from the fan-out and the others go on.
//! When the read fails (an I/O error, or a NAR hash that differs from Nix's), every consumer's
//! body ends with that error, so no cloud receives a complete upload of bytes that were not
//! proven; the same failure is the read's [`Outcome`].

use super::digest::{self, Digests, MultiHasher, SerialHasher, CHUNK};
use super::nar::{self, ComputedNar, StoreOutput};
use crate::progress::Progress;
use bytes::Bytes;
use futures::Stream;
use std::fs::File;
use std::io::{self, Read as _};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use tokio::sync::{mpsc, watch};

/// Chunks a consumer may lag behind the reader.
pub const QUEUE: usize = 4;

/// Where the digests of a read are computed.
///
/// Measured on a 2-CPU machine publishing 1 GiB into a Glance on the same machine
/// (`make bench-publish`): with a thread per digest the run took 1.19–1.31× `curl -T -`,
/// because four busy hashing threads kept preempting the server the bytes were waiting for;
/// with the three digests on the reader thread, 1.03×. One thread hashes at about 210 MiB/s
/// (md5 + sha256 + sha512 + the NAR's sha256), more than that Glance takes; with more CPUs
/// a thread per digest lifts that ceiling to sha512's 550 MiB/s.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hashing {
    /// On the reader thread.
    Inline,
    /// One thread per digest ([`MultiHasher`]).
    Threads,
}

impl Hashing {
    /// [`Hashing::Inline`] on a machine of at most two CPUs, else [`Hashing::Threads`].
    pub fn for_this_machine() -> Hashing {
        match std::thread::available_parallelism().map(|n| n.get()) {
            Ok(cpus) if cpus > 2 => Hashing::Threads,
            _ => Hashing::Inline,
        }
    }
}

enum Hashers {
    Inline(Box<SerialHasher>),
    Threads(MultiHasher),
}

impl Hashers {
    fn new(how: Hashing) -> Result<Hashers, Error> {
        Ok(match how {
            Hashing::Inline => Hashers::Inline(Box::default()),
            Hashing::Threads => Hashers::Threads(MultiHasher::new().map_err(Error::Digest)?),
        })
    }

    fn update(&mut self, chunk: Bytes) -> io::Result<()> {
        match self {
            Hashers::Inline(h) => {
                h.update(&chunk);
                Ok(())
            }
            Hashers::Threads(h) => h.update(chunk).map_err(io::Error::other),
        }
    }

    fn finish(self) -> Result<Digests, Error> {
        match self {
            Hashers::Inline(h) => Ok(h.finish()),
            Hashers::Threads(h) => h.finish().map_err(Error::Digest),
        }
    }
}

/// Why one read of the image failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The image file could not be read.
    #[error("cannot read {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The hashers failed.
    #[error("cannot hash the image while it streams")]
    Digest(#[source] digest::Error),
    /// The store output is not what Nix registered, or could not be read.
    #[error("store integrity check failed")]
    Nar(#[source] nar::Error),
    /// The image file is not inside the store output it came from.
    #[error("the image {} is not inside the store output {}", image.display(), output.display())]
    NotInOutput {
        /// The image file.
        image: PathBuf,
        /// The store output.
        output: PathBuf,
    },
    /// The reader thread could not be started.
    #[error("cannot start the thread that reads the image")]
    Spawn(#[source] io::Error),
    /// The reader thread ended without a result (it panicked).
    #[error("the thread reading the image stopped unexpectedly")]
    ReaderDied,
    /// Every consumer stopped before the end, so the read was abandoned.
    #[error("every upload of the image stopped before its end")]
    NoConsumer,
}

/// What a complete read established.
#[derive(Debug, Clone)]
pub struct Read {
    /// Size and digests of the image file.
    pub digests: Digests,
    /// The store output's NAR hash, recomputed and equal to Nix's (when there was one).
    pub nar: Option<ComputedNar>,
}

/// The result of one read, shared by all its consumers.
pub type Outcome = Result<Read, Arc<Error>>;

type Chunk = io::Result<Bytes>;

/// One consumer's share of a read: the chunks, and the read's outcome once it ends.
pub struct Body {
    rx: mpsc::Receiver<Chunk>,
    done: watch::Receiver<Option<Outcome>>,
}

impl Body {
    /// The chunks as an HTTP body stream (each counted in `progress` when the client takes
    /// it), and the read's outcome to wait for once the body is sent.
    pub fn split(
        self,
        progress: Progress,
    ) -> (impl Stream<Item = Chunk> + Send + 'static, Finished) {
        let chunks = futures::stream::unfold(self.rx, move |mut rx| {
            let progress = progress.clone();
            async move {
                let chunk = rx.recv().await?;
                if let Ok(bytes) = &chunk {
                    progress.add(bytes.len() as u64);
                }
                Some((chunk, rx))
            }
        });
        (chunks, Finished(self.done))
    }
}

/// The outcome of the read a [`Body`] came from.
pub struct Finished(watch::Receiver<Option<Outcome>>);

impl Finished {
    /// Waits until the read has ended (after the last chunk, the rest of the NAR walk).
    pub async fn outcome(mut self) -> Outcome {
        match self.0.wait_for(Option::is_some).await {
            Ok(value) => value.clone().unwrap_or(Err(Arc::new(Error::ReaderDied))),
            Err(_) => Err(Arc::new(Error::ReaderDied)),
        }
    }
}

enum Lane {
    Ready(Body),
    Used,
}

/// An image file read once for several consumers, plus fresh reads for consumers that need
/// the bytes again (an upload retried on a new candidate).
pub struct Source {
    file: PathBuf,
    store: Option<StoreOutput>,
    hashing: Hashing,
    lanes: Mutex<Vec<Lane>>,
}

impl Source {
    /// Starts reading `file` (inside `store`'s output, whose NAR hash is then checked) for
    /// `consumers` consumers, hashing as suits this machine ([`Hashing::for_this_machine`]).
    pub fn start(
        file: PathBuf,
        store: Option<StoreOutput>,
        consumers: usize,
    ) -> Result<Source, Error> {
        Source::start_hashing(file, store, consumers, Hashing::for_this_machine())
    }

    /// [`Source::start`], hashing as `hashing` says.
    pub fn start_hashing(
        file: PathBuf,
        store: Option<StoreOutput>,
        consumers: usize,
        hashing: Hashing,
    ) -> Result<Source, Error> {
        let bodies = spawn_read(file.clone(), store.clone(), hashing, consumers)?;
        Ok(Source {
            file,
            store,
            hashing,
            lanes: Mutex::new(bodies.into_iter().map(Lane::Ready).collect()),
        })
    }

    /// Consumer `index`'s body: its share of the first read, or a read of its own when it
    /// already took that share (a retry).
    pub fn open(&self, index: usize) -> Result<Body, Error> {
        let shared = {
            let mut lanes = self.lanes.lock().unwrap_or_else(|e| e.into_inner());
            match lanes.get_mut(index) {
                Some(lane) => match std::mem::replace(lane, Lane::Used) {
                    Lane::Ready(body) => Some(body),
                    Lane::Used => None,
                },
                None => None,
            }
        };
        match shared {
            Some(body) => Ok(body),
            None => spawn_read(self.file.clone(), self.store.clone(), self.hashing, 1)?
                .pop()
                .ok_or(Error::ReaderDied),
        }
    }

    /// Consumer `index` needs no bytes (its cloud already has them, or failed before sending):
    /// the shared read stops waiting for it.
    pub fn release(&self, index: usize) {
        let mut lanes = self.lanes.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(lane) = lanes.get_mut(index) {
            *lane = Lane::Used;
        }
    }
}

fn spawn_read(
    file: PathBuf,
    store: Option<StoreOutput>,
    how: Hashing,
    consumers: usize,
) -> Result<Vec<Body>, Error> {
    let (done_tx, done_rx) = watch::channel(None);
    let mut senders = Vec::with_capacity(consumers);
    let mut bodies = Vec::with_capacity(consumers);
    for _ in 0..consumers {
        let (tx, rx) = mpsc::channel(QUEUE);
        senders.push(Some(tx));
        bodies.push(Body {
            rx,
            done: done_rx.clone(),
        });
    }
    std::thread::Builder::new()
        .name("image-read".into())
        .spawn(move || {
            let outcome = read_once(&file, store.as_ref(), how, &mut senders).map_err(Arc::new);
            if let Err(err) = &outcome {
                // The bodies end in an error, so no cloud completes an upload of these bytes.
                for tx in senders.iter().flatten() {
                    let _ = tx.blocking_send(Err(io::Error::other(format!(
                        "the image read failed: {}",
                        crate::error::error_chain(err.as_ref())
                    ))));
                }
            }
            let _ = done_tx.send(Some(outcome));
            // Dropping the senders now ends every body.
        })
        .map_err(Error::Spawn)?;
    Ok(bodies)
}

/// Hands `chunk` to every live consumer, then to the hashers, waiting for the slowest; sets
/// `abandoned` when no consumer is left.
///
/// The consumers come first: while the reader waits for a hasher that is behind, the uploads
/// still have this chunk to send, so the servers are not left waiting on the client's CPU.
fn fan_out(
    hasher: &mut Hashers,
    outs: &mut [Option<mpsc::Sender<Chunk>>],
    abandoned: &mut bool,
    chunk: Bytes,
) -> io::Result<()> {
    let mut live = 0;
    for out in outs.iter_mut() {
        if let Some(tx) = out {
            if tx.blocking_send(Ok(chunk.clone())).is_ok() {
                live += 1;
            } else {
                *out = None;
            }
        }
    }
    if live == 0 && !outs.is_empty() {
        *abandoned = true;
        return Err(io::Error::other("every consumer stopped"));
    }
    hasher.update(chunk)
}

fn read_once(
    file: &Path,
    store: Option<&StoreOutput>,
    how: Hashing,
    outs: &mut [Option<mpsc::Sender<Chunk>>],
) -> Result<Read, Error> {
    let mut hasher = Hashers::new(how)?;
    let mut abandoned = false;
    let nar = match store {
        Some(out) => {
            let mut feed = |chunk: Bytes| fan_out(&mut hasher, outs, &mut abandoned, chunk);
            let mut tap = Some(nar::Tap {
                file,
                feed: &mut feed,
                fed: false,
            });
            let nar = nar::verify_tapped(&out.path, &out.nar_hash, &mut tap);
            let fed = tap.is_some_and(|t| t.fed);
            let nar = match nar {
                Err(_) if abandoned => return Err(Error::NoConsumer),
                other => other.map_err(Error::Nar)?,
            };
            if !fed {
                return Err(Error::NotInOutput {
                    image: file.to_path_buf(),
                    output: out.path.clone(),
                });
            }
            Some(nar)
        }
        None => {
            let read_err = |source| Error::Read {
                path: file.to_path_buf(),
                source,
            };
            let mut f = File::open(file).map_err(read_err)?;
            loop {
                let mut buf = vec![0u8; CHUNK];
                let mut filled = 0;
                while filled < CHUNK {
                    match f.read(&mut buf[filled..]) {
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
                if let Err(source) = fan_out(&mut hasher, outs, &mut abandoned, Bytes::from(buf)) {
                    return Err(if abandoned {
                        Error::NoConsumer
                    } else {
                        Error::Read {
                            path: file.to_path_buf(),
                            source,
                        }
                    });
                }
                if filled < CHUNK {
                    break;
                }
            }
            None
        }
    };
    let digests = hasher.finish()?;
    Ok(Read { digests, nar })
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;

    fn sample(dir: &Path, len: usize) -> (PathBuf, Vec<u8>) {
        let out = dir.join("out");
        std::fs::create_dir_all(out.join("nix-support")).unwrap();
        std::fs::write(out.join("nix-support/image-info.json"), "{}").unwrap();
        let data: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
        std::fs::write(out.join("disk.qcow2"), &data).unwrap();
        (out, data)
    }

    fn store_of(out: &Path) -> StoreOutput {
        let nar = nar::nar_hash(out).unwrap();
        StoreOutput {
            path: out.to_path_buf(),
            nar_hash: crate::nix::NarHash::new(nar.to_sri()).unwrap(),
        }
    }

    async fn drain(body: Body) -> (Vec<u8>, Outcome, u64) {
        let progress = Progress::default();
        let (chunks, finished) = body.split(progress.clone());
        let got: Vec<Chunk> = chunks.collect().await;
        let mut bytes = Vec::new();
        for c in got {
            match c {
                Ok(b) => bytes.extend_from_slice(&b),
                Err(_) => break,
            }
        }
        (bytes, finished.outcome().await, progress.sent())
    }

    #[tokio::test]
    async fn two_consumers_get_every_byte_of_one_read_with_its_digests_and_nar() {
        for hashing in [Hashing::Inline, Hashing::Threads] {
            two_consumers(hashing).await;
        }
    }

    async fn two_consumers(hashing: Hashing) {
        let dir = tempfile::tempdir().unwrap();
        let (out, data) = sample(dir.path(), CHUNK * 2 + 123);
        let file = out.join("disk.qcow2");
        let source = Source::start_hashing(file.clone(), Some(store_of(&out)), 2, hashing).unwrap();
        let (a, b) = tokio::join!(
            drain(source.open(0).unwrap()),
            drain(source.open(1).unwrap())
        );
        assert_eq!(a.0, data);
        assert_eq!(b.0, data);
        assert_eq!(a.2, data.len() as u64);
        let read = a.1.unwrap();
        let whole = tokio::task::spawn_blocking(move || digest::digest_file(&file))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(read.digests, whole);
        assert_eq!(read.nar, Some(nar::nar_hash(&out).unwrap()));
        assert_eq!(b.1.unwrap().digests, read.digests);
    }

    #[tokio::test]
    async fn a_consumer_that_stops_does_not_stall_the_other() {
        let dir = tempfile::tempdir().unwrap();
        let (out, data) = sample(dir.path(), CHUNK * (QUEUE + 4));
        let source = Source::start(out.join("disk.qcow2"), Some(store_of(&out)), 3).unwrap();
        // One consumer takes a chunk then goes away, one never starts: the third gets it all.
        let mut quitter = source.open(0).unwrap();
        assert!(quitter.rx.recv().await.is_some());
        drop(quitter);
        source.release(1);
        let (bytes, outcome, _) = drain(source.open(2).unwrap()).await;
        assert_eq!(bytes, data);
        assert_eq!(outcome.unwrap().digests.size, data.len() as u64);
    }

    #[tokio::test]
    async fn the_slowest_consumer_sets_the_pace() {
        let dir = tempfile::tempdir().unwrap();
        let (out, data) = sample(dir.path(), CHUNK * (QUEUE + 8));
        let source = Source::start(out.join("disk.qcow2"), Some(store_of(&out)), 2).unwrap();
        let mut fast = source.open(0).unwrap();
        let slow = source.open(1).unwrap();
        // While the slow consumer takes nothing, the reader stops once its queue is full:
        // the fast one gets that queue's worth and the chunk the reader holds, no more.
        let mut early = Vec::new();
        while let Ok(Some(chunk)) =
            tokio::time::timeout(std::time::Duration::from_millis(300), fast.rx.recv()).await
        {
            early.push(chunk.unwrap());
        }
        assert!(
            (1..=QUEUE + 1).contains(&early.len()),
            "the reader ran {} chunks ahead of a consumer that took none",
            early.len()
        );
        let ((slow_bytes, _, _), (rest, outcome, _)) = tokio::join!(drain(slow), drain(fast));
        assert_eq!(slow_bytes, data);
        let fast_bytes: Vec<u8> = early
            .iter()
            .flat_map(|b| b.iter().copied())
            .chain(rest)
            .collect();
        assert_eq!(fast_bytes, data);
        assert_eq!(outcome.unwrap().digests.size, data.len() as u64);
    }

    #[tokio::test]
    async fn a_changed_store_output_ends_every_body_in_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let (out, mut data) = sample(dir.path(), CHUNK + 5);
        let store = store_of(&out);
        let last = data.len() - 1;
        data[last] ^= 0x5a;
        std::fs::write(out.join("disk.qcow2"), &data).unwrap();
        let source = Source::start(out.join("disk.qcow2"), Some(store.clone()), 1).unwrap();
        let (chunks, finished) = source.open(0).unwrap().split(Progress::default());
        let got: Vec<Chunk> = chunks.collect().await;
        assert!(
            got.last().is_some_and(|c| c.is_err()),
            "the body must end in an error"
        );
        let err = finished.outcome().await.unwrap_err();
        let text = crate::error::error_chain(err.as_ref());
        assert!(text.contains(store.nar_hash.as_str()), "{text}");
        assert!(matches!(*err, Error::Nar(nar::Error::Mismatch { .. })));
    }

    #[tokio::test]
    async fn a_second_open_reads_the_file_again() {
        let dir = tempfile::tempdir().unwrap();
        let (out, data) = sample(dir.path(), 1000);
        let source = Source::start(out.join("disk.qcow2"), None, 1).unwrap();
        let first = drain(source.open(0).unwrap()).await;
        let again = drain(source.open(0).unwrap()).await;
        assert_eq!(first.0, data);
        assert_eq!(again.0, data);
        assert!(first.1.unwrap().nar.is_none());
    }

    #[tokio::test]
    async fn an_image_outside_its_output_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (out, _) = sample(dir.path(), 10);
        let elsewhere = dir.path().join("other.qcow2");
        std::fs::write(&elsewhere, b"x").unwrap();
        let source = Source::start(elsewhere, Some(store_of(&out)), 1).unwrap();
        let (_, outcome, _) = drain(source.open(0).unwrap()).await;
        assert!(matches!(*outcome.unwrap_err(), Error::NotInOutput { .. }));
    }
}
