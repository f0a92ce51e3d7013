//! Hashing cost on this CPU: md5, sha256 and sha512 from the crates the pipeline uses (md-5 and
//! sha2 0.11) and from the alternatives (ring, aws-lc-rs, the sha2-asm / md5-asm assembly),
//! each over the same in-memory buffer, plus the pipeline's one-read cost of all three digests
//! (three threads fed 2 MiB chunks through bounded channels, as `src/image/digest.rs` does).
//!
//! sha2 picks its backend with `--cfg` flags at compile time (see its README), so each forced
//! backend is a separate build of this program. `scripts/bench/hash.sh` makes the builds and
//! runs `drive`, which starts every build's `measure` once per round, rotating the order, and
//! writes a Markdown table. Figures, never pass/fail; only a digest that disagrees with the
//! others is an error.
//!
//! ```text
//! hash-bench measure [--mib N] [--rotate K]
//! hash-bench drive --rounds R --mib N --out FILE [--note TEXT]... BUILD...
//! ```

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::process::{Command, ExitCode, Stdio};
use std::sync::mpsc;
use std::time::Instant;

/// Chunk size of the pipeline's digests (`src/image/digest.rs`).
const CHUNK: usize = 2 << 20;
/// Chunks a hasher thread may lag behind, as in the pipeline.
const QUEUE: usize = 4;
const MIB: f64 = (1 << 20) as f64;

// ---------------------------------------------------------------------------------------
// The implementations

/// One incremental hash.
trait Hasher: Send {
    fn update(&mut self, data: &[u8]);
    fn finish(self: Box<Self>) -> Vec<u8>;
}

/// The RustCrypto `Digest` types (md-5 and sha2 0.11).
struct RustCrypto<D>(D);

impl<D: sha2::Digest + Send> Hasher for RustCrypto<D> {
    fn update(&mut self, data: &[u8]) {
        self.0.update(data);
    }
    fn finish(self: Box<Self>) -> Vec<u8> {
        self.0.finalize().to_vec()
    }
}

fn md_5() -> Box<dyn Hasher> {
    Box::new(RustCrypto(md5::Md5::default()))
}
fn sha2_256() -> Box<dyn Hasher> {
    Box::new(RustCrypto(sha2::Sha256::default()))
}
fn sha2_512() -> Box<dyn Hasher> {
    Box::new(RustCrypto(sha2::Sha512::default()))
}

#[cfg(feature = "ring")]
struct Ring(ring::digest::Context);

#[cfg(feature = "ring")]
impl Hasher for Ring {
    fn update(&mut self, data: &[u8]) {
        self.0.update(data);
    }
    fn finish(self: Box<Self>) -> Vec<u8> {
        self.0.finish().as_ref().to_vec()
    }
}

#[cfg(feature = "ring")]
fn ring_256() -> Box<dyn Hasher> {
    Box::new(Ring(ring::digest::Context::new(&ring::digest::SHA256)))
}
#[cfg(feature = "ring")]
fn ring_512() -> Box<dyn Hasher> {
    Box::new(Ring(ring::digest::Context::new(&ring::digest::SHA512)))
}

#[cfg(feature = "aws-lc-rs")]
struct AwsLc(aws_lc_rs::digest::Context);

#[cfg(feature = "aws-lc-rs")]
impl Hasher for AwsLc {
    fn update(&mut self, data: &[u8]) {
        self.0.update(data);
    }
    fn finish(self: Box<Self>) -> Vec<u8> {
        self.0.finish().as_ref().to_vec()
    }
}

#[cfg(feature = "aws-lc-rs")]
fn aws_lc_256() -> Box<dyn Hasher> {
    Box::new(AwsLc(aws_lc_rs::digest::Context::new(
        &aws_lc_rs::digest::SHA256,
    )))
}
#[cfg(feature = "aws-lc-rs")]
fn aws_lc_512() -> Box<dyn Hasher> {
    Box::new(AwsLc(aws_lc_rs::digest::Context::new(
        &aws_lc_rs::digest::SHA512,
    )))
}

/// The sha2-asm / md5-asm compression functions, with the Merkle–Damgård buffering and
/// padding around them (the crates export only the compression function).
#[cfg(all(feature = "asm", target_arch = "x86_64"))]
mod asm {
    use super::Hasher;

    /// A block-buffered hash over `B`-byte blocks with state `S`.
    pub struct Md<const B: usize, S> {
        state: S,
        pending: Vec<u8>,
        len: u64,
        compress: fn(&mut S, &[[u8; B]]),
        big_endian: bool,
    }

    impl<const B: usize, S: Copy + Send + Words> Md<B, S> {
        fn blocks(data: &[u8]) -> (&[[u8; B]], &[u8]) {
            let (blocks, rest) = data.as_chunks::<B>();
            (blocks, rest)
        }
    }

    /// The state as bytes in the digest's byte order.
    pub trait Words {
        fn bytes(&self, big_endian: bool) -> Vec<u8>;
    }
    impl Words for [u32; 4] {
        fn bytes(&self, big_endian: bool) -> Vec<u8> {
            self.iter().flat_map(|w| word32(*w, big_endian)).collect()
        }
    }
    impl Words for [u32; 8] {
        fn bytes(&self, big_endian: bool) -> Vec<u8> {
            self.iter().flat_map(|w| word32(*w, big_endian)).collect()
        }
    }
    impl Words for [u64; 8] {
        fn bytes(&self, _big_endian: bool) -> Vec<u8> {
            self.iter().flat_map(|w| w.to_be_bytes()).collect()
        }
    }
    fn word32(w: u32, big_endian: bool) -> [u8; 4] {
        if big_endian {
            w.to_be_bytes()
        } else {
            w.to_le_bytes()
        }
    }

    impl<const B: usize, S: Copy + Send + Words> Hasher for Md<B, S> {
        fn update(&mut self, mut data: &[u8]) {
            self.len += data.len() as u64;
            if !self.pending.is_empty() {
                let take = (B - self.pending.len()).min(data.len());
                self.pending.extend_from_slice(&data[..take]);
                data = &data[take..];
                if self.pending.len() < B {
                    return;
                }
                let (block, _) = Self::blocks(&self.pending);
                (self.compress)(&mut self.state, block);
                self.pending.clear();
            }
            let (blocks, rest) = Self::blocks(data);
            (self.compress)(&mut self.state, blocks);
            self.pending.extend_from_slice(rest);
        }

        fn finish(mut self: Box<Self>) -> Vec<u8> {
            // 0x80, zeros, then the length in bits in the last 8 bytes (MD5 and SHA-256) or
            // 16 bytes (SHA-512) of the last block.
            let len_bytes = if B == 128 { 16 } else { 8 };
            let bits = u128::from(self.len) * 8;
            let mut tail = std::mem::take(&mut self.pending);
            tail.push(0x80);
            while tail.len() % B != B - len_bytes {
                tail.push(0);
            }
            if self.big_endian {
                tail.extend_from_slice(&bits.to_be_bytes()[16 - len_bytes..]);
            } else {
                tail.extend_from_slice(&bits.to_le_bytes()[..len_bytes]);
            }
            let (blocks, _) = Self::blocks(&tail);
            (self.compress)(&mut self.state, blocks);
            self.state.bytes(self.big_endian)
        }
    }

    pub fn md5() -> Box<dyn Hasher> {
        Box::new(Md::<64, [u32; 4]> {
            state: [0x67452301, 0xefcdab89, 0x98badcfe, 0x10325476],
            pending: Vec::with_capacity(128),
            len: 0,
            compress: md5_asm::compress,
            big_endian: false,
        })
    }

    pub fn sha256() -> Box<dyn Hasher> {
        Box::new(Md::<64, [u32; 8]> {
            state: [
                0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab,
                0x5be0cd19,
            ],
            pending: Vec::with_capacity(128),
            len: 0,
            compress: sha2_asm::compress256,
            big_endian: true,
        })
    }

    pub fn sha512() -> Box<dyn Hasher> {
        Box::new(Md::<128, [u64; 8]> {
            state: [
                0x6a09e667f3bcc908,
                0xbb67ae8584caa73b,
                0x3c6ef372fe94f82b,
                0xa54ff53a5f1d36f1,
                0x510e527fade682d1,
                0x9b05688c2b3e6c1f,
                0x1f83d9abfb41bd6b,
                0x5be0cd19137e2179,
            ],
            pending: Vec::with_capacity(256),
            len: 0,
            compress: sha2_asm::compress512,
            big_endian: true,
        })
    }
}

type Factory = fn() -> Box<dyn Hasher>;

/// One thing to measure: a single hash, or md5 + sha256 + sha512 in one read.
struct Case {
    /// "md5", "sha256", "sha512" or "md5+sha256+sha512".
    algorithm: &'static str,
    /// The crate(s) and the build.
    implementation: String,
    /// What runs on this CPU.
    backend: String,
    /// The one the pipeline uses today (sha2 0.11 / md-5 0.11 in a default build).
    pipeline: bool,
    /// One factory per lane: one for a single hash, three (md5, sha256, sha512) for the
    /// combined read.
    lanes: Vec<Factory>,
}

/// Which build of sha2 0.11 this is (from the same `--cfg` flags that sha2 reads).
fn sha2_build() -> &'static str {
    if cfg!(all(sha2_backend = "soft", sha2_backend_soft = "compact")) {
        "soft-compact"
    } else if cfg!(sha2_backend = "soft") {
        "soft"
    } else if cfg!(sha2_256_backend = "x86-sha") {
        "x86-sha"
    } else if cfg!(sha2_512_backend = "x86-avx2") {
        "x86-avx2"
    } else {
        "default"
    }
}

#[cfg(target_arch = "x86_64")]
fn cpu_has(feature: &str) -> bool {
    match feature {
        "sha" => std::arch::is_x86_feature_detected!("sha"),
        "sse4.1" => std::arch::is_x86_feature_detected!("sse4.1"),
        "ssse3" => std::arch::is_x86_feature_detected!("ssse3"),
        "avx" => std::arch::is_x86_feature_detected!("avx"),
        "avx2" => std::arch::is_x86_feature_detected!("avx2"),
        _ => false,
    }
}
#[cfg(not(target_arch = "x86_64"))]
fn cpu_has(_feature: &str) -> bool {
    false
}

/// Whether the CPU says "GenuineIntel" (ring and aws-lc use their AVX SHA-512 code only there).
#[cfg(any(feature = "ring", feature = "aws-lc-rs"))]
fn intel_cpu() -> bool {
    std::fs::read_to_string("/proc/cpuinfo")
        .map(|info| {
            info.lines()
                .any(|l| l.starts_with("vendor_id") && l.ends_with("GenuineIntel"))
        })
        .unwrap_or(false)
}

/// What the OpenSSL-derived assembly of ring and aws-lc picks on this CPU.
#[cfg(any(feature = "ring", feature = "aws-lc-rs"))]
fn boringssl_backend(bits: u32) -> String {
    match bits {
        256 if cpu_has("sha") && cpu_has("ssse3") => "assembly, SHA-NI".into(),
        256 if cpu_has("avx") && intel_cpu() => "assembly, AVX (SHA-NI missing)".into(),
        256 => "assembly, SSSE3 or scalar (SHA-NI missing)".into(),
        _ if cpu_has("avx") && intel_cpu() => "assembly, AVX".into(),
        _ => "scalar assembly (its AVX code runs on Intel CPUs only)".into(),
    }
}

fn cases() -> Vec<Case> {
    let build = sha2_build();
    let sha256_default = if cpu_has("sha") && cpu_has("sse4.1") {
        "x86-sha (SHA-NI), picked at run time"
    } else {
        "soft, picked at run time (no SHA-NI)"
    };
    let sha512_default = if cpu_has("avx2") {
        "x86-avx2, picked at run time"
    } else {
        "soft, picked at run time (no AVX2)"
    };
    let mut v = Vec::new();
    let mut single = |algorithm, implementation: String, backend: &str, pipeline, f: Factory| {
        v.push(Case {
            algorithm,
            implementation,
            backend: backend.into(),
            pipeline,
            lanes: vec![f],
        })
    };
    match build {
        "default" => {
            single(
                "md5",
                "md-5 0.11".into(),
                "soft (its only x86-64 backend)",
                true,
                md_5,
            );
            single(
                "sha256",
                "sha2 0.11, default build".into(),
                sha256_default,
                true,
                sha2_256,
            );
            single(
                "sha512",
                "sha2 0.11, default build".into(),
                sha512_default,
                true,
                sha2_512,
            );
        }
        "soft" | "soft-compact" => {
            let (flag, backend) = if build == "soft" {
                (
                    "`--cfg sha2_backend=\"soft\"`",
                    "soft, forced (unrolled rounds)",
                )
            } else {
                (
                    "`--cfg sha2_backend=\"soft\"` + `sha2_backend_soft=\"compact\"`",
                    "soft, forced (compact rounds)",
                )
            };
            single(
                "sha256",
                format!("sha2 0.11, {flag}"),
                backend,
                false,
                sha2_256,
            );
            single(
                "sha512",
                format!("sha2 0.11, {flag}"),
                backend,
                false,
                sha2_512,
            );
        }
        "x86-sha" => single(
            "sha256",
            "sha2 0.11, `--cfg sha2_256_backend=\"x86-sha\"`".into(),
            "x86-sha (SHA-NI), fixed at compile time",
            false,
            sha2_256,
        ),
        _ => single(
            "sha512",
            "sha2 0.11, `--cfg sha2_512_backend=\"x86-avx2\"`".into(),
            "x86-avx2, fixed at compile time",
            false,
            sha2_512,
        ),
    }
    #[cfg(feature = "ring")]
    {
        single(
            "sha256",
            "ring 0.17".into(),
            &boringssl_backend(256),
            false,
            ring_256,
        );
        single(
            "sha512",
            "ring 0.17".into(),
            &boringssl_backend(512),
            false,
            ring_512,
        );
    }
    #[cfg(feature = "aws-lc-rs")]
    {
        single(
            "sha256",
            "aws-lc-rs 1".into(),
            &boringssl_backend(256),
            false,
            aws_lc_256,
        );
        single(
            "sha512",
            "aws-lc-rs 1".into(),
            &boringssl_backend(512),
            false,
            aws_lc_512,
        );
    }
    #[cfg(all(feature = "asm", target_arch = "x86_64"))]
    {
        let scalar = "scalar x86-64 assembly";
        single("md5", "md5-asm 0.5".into(), scalar, false, asm::md5);
        single("sha256", "sha2-asm 0.6".into(), scalar, false, asm::sha256);
        single("sha512", "sha2-asm 0.6".into(), scalar, false, asm::sha512);
    }

    // The combined read: the pipeline's crates in this build, and each alternative for the
    // SHA-2 pair (md5 stays md-5: ring and aws-lc-rs have none).
    let both = "md5 + sha256 + sha512";
    let mut combined = |implementation: String, backend: String, pipeline, lanes: [Factory; 3]| {
        v.push(Case {
            algorithm: "md5+sha256+sha512",
            implementation,
            backend,
            pipeline,
            lanes: lanes.to_vec(),
        })
    };
    match build {
        "default" => combined(
            "md-5 0.11 + sha2 0.11, default build".into(),
            format!("{both}: soft, {sha256_default}, {sha512_default}"),
            true,
            [md_5, sha2_256, sha2_512],
        ),
        "soft" => combined(
            "md-5 0.11 + sha2 0.11, `--cfg sha2_backend=\"soft\"`".into(),
            format!("{both}: all soft"),
            false,
            [md_5, sha2_256, sha2_512],
        ),
        _ => {}
    }
    #[cfg(feature = "ring")]
    combined(
        "md-5 0.11 + ring 0.17".into(),
        format!(
            "{both}: soft, {}, {}",
            boringssl_backend(256),
            boringssl_backend(512)
        ),
        false,
        [md_5, ring_256, ring_512],
    );
    #[cfg(feature = "aws-lc-rs")]
    combined(
        "md-5 0.11 + aws-lc-rs 1".into(),
        format!(
            "{both}: soft, {}, {}",
            boringssl_backend(256),
            boringssl_backend(512)
        ),
        false,
        [md_5, aws_lc_256, aws_lc_512],
    );
    #[cfg(all(feature = "asm", target_arch = "x86_64"))]
    combined(
        "md5-asm 0.5 + sha2-asm 0.6".into(),
        format!("{both}: scalar x86-64 assembly"),
        false,
        [asm::md5, asm::sha256, asm::sha512],
    );
    v
}

// ---------------------------------------------------------------------------------------
// measure: one build, every case once

/// User + system CPU seconds of this process, all threads.
fn cpu_seconds() -> f64 {
    // SAFETY: getrusage fills the zeroed struct it is given; RUSAGE_SELF always exists.
    let ru = unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut ru);
        ru
    };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// A buffer of pseudo-random bytes (xorshift64*): incompressible, the same in every build,
/// and every page touched before any timing starts.
fn buffer(bytes: usize) -> Vec<u8> {
    let mut buf = vec![0u8; bytes];
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for word in buf.chunks_mut(8) {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        let v = x.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes();
        word.copy_from_slice(&v[..word.len()]);
    }
    buf
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// Hashes `data` in CHUNK-sized updates; a single lane runs on this thread, several run on a
/// thread each, fed through bounded channels (the pipeline's `MultiHasher`).
fn run(lanes: &[Factory], data: &[u8]) -> Vec<String> {
    if let [one] = lanes {
        let mut h = one();
        for chunk in data.chunks(CHUNK) {
            h.update(chunk);
        }
        return vec![hex(&h.finish())];
    }
    std::thread::scope(|s| {
        let mut txs = Vec::new();
        let mut handles = Vec::new();
        for &make in lanes {
            let (tx, rx) = mpsc::sync_channel::<&[u8]>(QUEUE);
            txs.push(tx);
            handles.push(s.spawn(move || {
                let mut h = make();
                for chunk in rx {
                    h.update(chunk);
                }
                hex(&h.finish())
            }));
        }
        for chunk in data.chunks(CHUNK) {
            for tx in &txs {
                tx.send(chunk).expect("a hasher thread stopped");
            }
        }
        drop(txs);
        handles
            .into_iter()
            .map(|h| h.join().expect("a hasher thread panicked"))
            .collect()
    })
}

fn measure(mib: usize, rotate: usize) {
    let data = buffer(mib << 20);
    let mut cases = cases();
    let n = cases.len();
    cases.rotate_left(rotate % n.max(1));
    for case in &cases {
        let (wall0, cpu0) = (Instant::now(), cpu_seconds());
        let digests = run(&case.lanes, &data);
        let (wall, cpu) = (wall0.elapsed().as_secs_f64(), cpu_seconds() - cpu0);
        // One line per case: build, algorithm, implementation, backend, pipeline?, bytes,
        // wall s, CPU s, digest(s).
        println!(
            "{}\t{}\t{}\t{}\t{}\t{}\t{wall:.6}\t{cpu:.6}\t{}",
            sha2_build(),
            case.algorithm,
            case.implementation,
            case.backend,
            u8::from(case.pipeline),
            data.len(),
            digests.join("/")
        );
    }
}

// ---------------------------------------------------------------------------------------
// drive: every build, several rounds, one table

struct Sample {
    algorithm: String,
    implementation: String,
    backend: String,
    pipeline: bool,
    bytes: f64,
    wall: f64,
    cpu: f64,
    digest: String,
}

fn parse(line: &str) -> Option<Sample> {
    let f: Vec<&str> = line.split('\t').collect();
    if f.len() != 9 {
        return None;
    }
    Some(Sample {
        algorithm: f[1].into(),
        implementation: f[2].into(),
        backend: f[3].into(),
        pipeline: f[4] == "1",
        bytes: f[5].parse().ok()?,
        wall: f[6].parse().ok()?,
        cpu: f[7].parse().ok()?,
        digest: f[8].into(),
    })
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

/// The CPU model, the flags that matter for hashing, and the number of CPUs.
fn cpu_description() -> String {
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let field = |name: &str| {
        info.lines()
            .find(|l| l.split(':').next().map(str::trim) == Some(name))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_string())
            .unwrap_or_default()
    };
    let flags = field("flags");
    let flags: Vec<&str> = flags.split_whitespace().collect();
    let wanted = [
        "sha_ni", "avx2", "avx512f", "avx512vl", "bmi2", "ssse3", "sse4_1",
    ];
    let present: Vec<&str> = wanted
        .iter()
        .copied()
        .filter(|w| flags.contains(w))
        .collect();
    let absent: Vec<&str> = wanted
        .iter()
        .copied()
        .filter(|w| !flags.contains(w))
        .collect();
    let cpus = info.lines().filter(|l| l.starts_with("processor")).count();
    let mut s = format!(
        "{} (family {}, model {}), {cpus} CPUs; flags: {}",
        field("model name"),
        field("cpu family"),
        field("model"),
        present.join(", ")
    );
    if !absent.is_empty() {
        let _ = write!(s, "; absent: {}", absent.join(", "));
    }
    s
}

const ORDER: [&str; 4] = ["md5", "sha256", "sha512", "md5+sha256+sha512"];

struct Opts {
    rounds: usize,
    mib: usize,
    out: Option<String>,
    notes: Vec<String>,
    builds: Vec<String>,
}

fn drive(o: &Opts) -> Result<(), String> {
    let load_before = loadavg();
    let mut samples: Vec<Sample> = Vec::new();
    for round in 0..o.rounds {
        let mut builds = o.builds.clone();
        let n = builds.len();
        builds.rotate_left(round % n);
        for build in &builds {
            eprintln!(
                "bench: round {}/{}: {build} measure --mib {}",
                round + 1,
                o.rounds,
                o.mib
            );
            let out = Command::new(build)
                .args(["measure", "--mib", &o.mib.to_string()])
                .args(["--rotate", &round.to_string()])
                .stderr(Stdio::inherit())
                .output()
                .map_err(|e| format!("cannot run {build}: {e}"))?;
            if !out.status.success() {
                return Err(format!("{build} measure failed ({})", out.status));
            }
            let text = String::from_utf8_lossy(&out.stdout);
            for line in text.lines() {
                samples.push(parse(line).ok_or_else(|| format!("bad line from {build}: {line}"))?);
            }
        }
    }
    let load_after = loadavg();

    // Every implementation of an algorithm must give the same digest of the same bytes.
    let mut digests: BTreeMap<&str, BTreeMap<&str, Vec<&str>>> = BTreeMap::new();
    for s in &samples {
        digests
            .entry(&s.algorithm)
            .or_default()
            .entry(&s.digest)
            .or_default()
            .push(&s.implementation);
    }
    let mut disagree = Vec::new();
    for (algorithm, by_digest) in &digests {
        if by_digest.len() > 1 {
            disagree.push(format!("{algorithm}: {by_digest:?}"));
        }
    }
    let one = |a: &str| digests.get(a).and_then(|d| d.keys().next().copied());
    if let (Some(m), Some(s2), Some(s5), Some(all)) = (
        one("md5"),
        one("sha256"),
        one("sha512"),
        one("md5+sha256+sha512"),
    ) {
        if all != format!("{m}/{s2}/{s5}") {
            disagree.push("the combined read's digests differ from the single ones".into());
        }
    }

    // Rows: (algorithm, implementation) in ORDER, fastest first within an algorithm.
    struct Row {
        algorithm: String,
        implementation: String,
        backend: String,
        pipeline: bool,
        mibs: Vec<f64>,
        cpu_per_gib: Vec<f64>,
    }
    let mut rows: Vec<Row> = Vec::new();
    for s in &samples {
        let mibs = s.bytes / MIB / s.wall;
        let cpu = s.cpu * (1u64 << 30) as f64 / s.bytes;
        match rows
            .iter_mut()
            .find(|r| r.algorithm == s.algorithm && r.implementation == s.implementation)
        {
            Some(r) => {
                r.mibs.push(mibs);
                r.cpu_per_gib.push(cpu);
            }
            None => rows.push(Row {
                algorithm: s.algorithm.clone(),
                implementation: s.implementation.clone(),
                backend: s.backend.clone(),
                pipeline: s.pipeline,
                mibs: vec![mibs],
                cpu_per_gib: vec![cpu],
            }),
        }
    }
    let med = |v: &[f64]| median(&mut v.to_vec());
    rows.sort_by(|a, b| {
        let pos = |r: &Row| ORDER.iter().position(|o| *o == r.algorithm);
        pos(a)
            .cmp(&pos(b))
            .then(med(&b.mibs).total_cmp(&med(&a.mibs)))
    });
    let pipeline_median = |algorithm: &str| {
        rows.iter()
            .find(|r| r.pipeline && r.algorithm == algorithm)
            .map(|r| med(&r.mibs))
    };

    let mut md = String::new();
    let _ = writeln!(
        md,
        "# Hashing: {} MiB in memory, {} rounds, builds and implementations alternating\n",
        o.mib, o.rounds
    );
    let _ = writeln!(md, "- CPU: {}", cpu_description());
    let _ = writeln!(
        md,
        "- load average (1, 5, 15 min): {load_before} before, {load_after} after"
    );
    for note in &o.notes {
        let _ = writeln!(md, "- {note}");
    }
    let _ = writeln!(
        md,
        "\n| algorithm | implementation | backend on this CPU | MiB/s, median (min–max) | × pipeline |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|");
    for r in rows.iter().filter(|r| r.algorithm != "md5+sha256+sha512") {
        let m = med(&r.mibs);
        let (lo, hi) = min_max(&r.mibs);
        let ratio = pipeline_median(&r.algorithm)
            .map(|p| format!("{:.2}", m / p))
            .unwrap_or_default();
        let name = if r.pipeline {
            format!("**{}** (pipeline)", r.implementation)
        } else {
            r.implementation.clone()
        };
        let _ = writeln!(
            md,
            "| {} | {name} | {} | {m:.0} ({lo:.0}–{hi:.0}) | {ratio} |",
            r.algorithm, r.backend
        );
    }
    let _ = writeln!(
        md,
        "\nmd5 + sha256 + sha512 in one read: a thread per hash, 2 MiB chunks through bounded \
         channels, as `src/image/digest.rs` does (wall time; the machine has {} CPUs).\n",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let _ = writeln!(
        md,
        "| implementations | MiB/s, median (min–max) | CPU s per GiB, median | × pipeline |"
    );
    let _ = writeln!(md, "|---|---|---|---|");
    for r in rows.iter().filter(|r| r.algorithm == "md5+sha256+sha512") {
        let m = med(&r.mibs);
        let (lo, hi) = min_max(&r.mibs);
        let ratio = pipeline_median(&r.algorithm)
            .map(|p| format!("{:.2}", m / p))
            .unwrap_or_default();
        let name = if r.pipeline {
            format!("**{}** (pipeline)", r.implementation)
        } else {
            r.implementation.clone()
        };
        let _ = writeln!(
            md,
            "| {name} | {m:.0} ({lo:.0}–{hi:.0}) | {:.2} | {ratio} |",
            med(&r.cpu_per_gib)
        );
    }
    if disagree.is_empty() {
        let _ = writeln!(
            md,
            "\nEvery implementation gave the same digest of the buffer for its algorithm."
        );
    } else {
        let _ = writeln!(md, "\nDIGESTS DISAGREE: {}", disagree.join("; "));
    }
    print!("{md}");
    if let Some(out) = &o.out {
        if let Some(dir) = std::path::Path::new(out).parent() {
            std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {dir:?}: {e}"))?;
        }
        std::fs::write(out, &md).map_err(|e| format!("cannot write {out}: {e}"))?;
        eprintln!("bench: table written to {out}");
    }
    if disagree.is_empty() {
        Ok(())
    } else {
        Err("an implementation gave a different digest (see the table)".into())
    }
}

fn min_max(v: &[f64]) -> (f64, f64) {
    v.iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &x| {
            (lo.min(x), hi.max(x))
        })
}

// ---------------------------------------------------------------------------------------

const USAGE: &str = "usage:
  hash-bench measure [--mib N] [--rotate K]
      hash an N MiB buffer (default 1024) with every implementation of this build, once
      each, starting at the K-th; one tab-separated line per implementation
  hash-bench drive --rounds R --mib N [--out FILE] [--note TEXT]... BUILD...
      run each BUILD's measure once per round (order rotating) and print a Markdown table";

fn parse_args(args: &[String]) -> Result<(String, Opts, usize), String> {
    let mut it = args.iter();
    let cmd = it.next().cloned().ok_or("no command")?;
    let mut o = Opts {
        rounds: 5,
        mib: 1024,
        out: None,
        notes: Vec::new(),
        builds: Vec::new(),
    };
    let mut rotate = 0;
    while let Some(a) = it.next() {
        let mut value = || it.next().cloned().ok_or(format!("{a} needs a value"));
        let number = |v: String| v.parse::<usize>().map_err(|e| format!("{a} {v}: {e}"));
        match a.as_str() {
            "--rounds" => o.rounds = number(value()?)?,
            "--mib" => o.mib = number(value()?)?,
            "--rotate" => rotate = number(value()?)?,
            "--out" => o.out = Some(value()?),
            "--note" => o.notes.push(value()?),
            "-h" | "--help" => return Err(String::new()),
            s if s.starts_with('-') => return Err(format!("unknown option {s}")),
            s => o.builds.push(s.into()),
        }
    }
    if o.mib == 0 || o.rounds == 0 {
        return Err("--mib and --rounds must be at least 1".into());
    }
    Ok((cmd, o, rotate))
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = parse_args(&args).and_then(|(cmd, o, rotate)| match cmd.as_str() {
        "measure" if o.builds.is_empty() => {
            measure(o.mib, rotate);
            Ok(())
        }
        "drive" if !o.builds.is_empty() => drive(&o),
        _ => Err(String::new()),
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("hash-bench: {e}");
            }
            eprintln!("{USAGE}");
            ExitCode::from(2)
        }
    }
}
