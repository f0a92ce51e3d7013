//! Property tests of every parser of untrusted bytes: arbitrary input, and mutations of valid
//! input (bit flips, truncation, huge sizes and offsets). The bar: no panic, and an answer in
//! bounded time and memory (a parser that looped or allocated without bound would stall the
//! run or be killed, failing it). `make test` runs a short budget (`PROPTEST_CASES`, 32 per
//! property); `make fuzz` runs the same properties with many more. Failures proptest finds
//! are kept under `tests/it/props.proptest-regressions` and replayed first on every run.

use hephaestus::image::disk::MemDisk;
use hephaestus::image::fat::Fat;
use hephaestus::image::{partition, qcow2};
use proptest::prelude::*;
use std::io::Write;

/// A valid disk, raw and as qcow2: a GPT with an EFI System Partition holding a FAT, built
/// once with sfdisk, mformat and qemu-img (`make install-deps`).
fn valid_disk() -> &'static (Vec<u8>, Vec<u8>) {
    static DISK: std::sync::OnceLock<(Vec<u8>, Vec<u8>)> = std::sync::OnceLock::new();
    DISK.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tempdir");
        let raw = dir.path().join("d.raw");
        std::fs::File::create(&raw)
            .and_then(|f| f.set_len(4 << 20))
            .expect("raw disk");
        let mut sfdisk = std::process::Command::new("sfdisk")
            .arg("--quiet")
            .arg(&raw)
            .stdin(std::process::Stdio::piped())
            .spawn()
            .expect("sfdisk");
        sfdisk
            .stdin
            .as_mut()
            .expect("stdin")
            .write_all(
                b"label: gpt\nstart=2048, size=4096, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B\n",
            )
            .expect("sfdisk input");
        assert!(sfdisk.wait().expect("sfdisk").success());
        let fat = std::process::Command::new("mformat")
            .arg("-i")
            .arg(format!("{}@@1M", raw.display()))
            .args(["-T", "4096", "-h", "1", "-s", "32", "::"])
            .status()
            .expect("mformat (mtools)");
        assert!(fat.success());
        let img = dir.path().join("d.qcow2");
        let ok = std::process::Command::new("qemu-img")
            .args(["convert", "-q", "-f", "raw", "-O", "qcow2"])
            .arg(&raw)
            .arg(&img)
            .status()
            .expect("qemu-img");
        assert!(ok.success());
        let disk = (
            std::fs::read(&raw).expect("read raw"),
            std::fs::read(&img).expect("read qcow2"),
        );
        // The mutations start from a disk the readers accept.
        let table = partition::read_table(&mut MemDisk(disk.0.clone())).expect("a GPT");
        assert!(table.esp().is_some(), "an ESP");
        let mut esp = MemDisk(disk.0[1 << 20..].to_vec());
        Fat::open(&mut esp).expect("a FAT in the ESP");
        qcow2::inspect(&img).expect("a sound qcow2");
        disk
    })
}

fn valid_qcow2() -> &'static [u8] {
    &valid_disk().1
}

/// `bytes` with each `(offset, mask)` XOR-ed in, and cut to `len` when given.
fn mutate(bytes: &[u8], flips: &[(usize, u8)], len: Option<usize>) -> Vec<u8> {
    let mut out = bytes.to_vec();
    for (at, mask) in flips {
        if !out.is_empty() {
            let i = at % out.len();
            out[i] ^= mask;
        }
    }
    if let Some(len) = len {
        out.truncate(len.min(out.len()));
    }
    out
}

/// `inspect` and a full read through the guest reader of `bytes` as a file.
fn inspect_bytes(bytes: &[u8]) {
    let mut file = tempfile::NamedTempFile::new().expect("temp file");
    file.write_all(bytes).expect("write");
    let _ = qcow2::inspect(file.path());
    if let Ok(mut guest) = qcow2::GuestReader::open(file.path()) {
        let _ = partition::read_table(&mut guest);
    }
}

/// A big-endian u64 written at `at` (a header field).
fn put_be64(bytes: &mut [u8], at: usize, value: u64) {
    bytes[at..at + 8].copy_from_slice(&value.to_be_bytes());
}

proptest! {
    #[test]
    fn qcow2_arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..4096)) {
        inspect_bytes(&bytes);
    }

    #[test]
    fn qcow2_mutated_valid_image_never_panics(
        flips in proptest::collection::vec((0usize..2048, any::<u8>()), 1..8),
        len in proptest::option::of(0usize..300_000),
    ) {
        inspect_bytes(&mutate(valid_qcow2(), &flips, len));
    }

    #[test]
    fn qcow2_huge_sizes_and_offsets_never_panic(
        field in prop::sample::select(vec![24usize, 40, 48, 56, 64]),
        value in prop_oneof![Just(u64::MAX), Just(1u64 << 63), Just(0u64), any::<u64>()],
    ) {
        // 24 virtual size, 40 L1 offset, 48 refcount table offset, 56 snapshots, 64 snapshot offset.
        let mut bytes = valid_qcow2().to_vec();
        put_be64(&mut bytes, field, value);
        inspect_bytes(&bytes);
    }

    #[test]
    fn qcow2_mutated_compressed_image_never_panics_when_read_whole(
        flips in proptest::collection::vec((0usize..400_000, any::<u8>()), 1..8),
        len in proptest::option::of(0usize..400_000),
    ) {
        // Flips land anywhere, so they hit the deflate streams and their descriptors too.
        let bytes = mutate(compressed_qcow2(), &flips, len);
        let mut file = tempfile::NamedTempFile::new().expect("temp file");
        file.write_all(&bytes).expect("write");
        if let Ok(mut guest) = qcow2::GuestReader::open(file.path()) {
            let size = guest.virtual_size().min(8 << 20);
            let mut buf = vec![0u8; 1 << 16];
            let mut at = 0;
            while at + buf.len() as u64 <= size {
                let _ = guest.read_at(at, &mut buf);
                at += buf.len() as u64;
            }
        }
    }

    #[test]
    fn partition_tables_of_arbitrary_disks_never_panic(
        bytes in proptest::collection::vec(any::<u8>(), 0..40_000),
    ) {
        let _ = partition::read_table(&mut MemDisk(bytes));
    }

    #[test]
    fn mutated_gpt_and_fat_never_panic(
        flips in proptest::collection::vec((0usize..(2 << 20), any::<u8>()), 1..16),
        len in proptest::option::of(0usize..(4 << 20)),
    ) {
        let raw = &valid_disk().0;
        // Flips land in the first 2 MiB: the GPT (first 34 sectors) and the FAT's start.
        let mut disk = MemDisk(mutate(raw, &flips, len));
        let _ = partition::read_table(&mut disk);
        let esp = disk.0.get(1 << 20..).map(<[u8]>::to_vec).unwrap_or_default();
        let mut esp = MemDisk(esp);
        if let Ok(mut fat) = Fat::open(&mut esp) {
            let _ = fat.find("\\EFI\\BOOT\\BOOTX64.EFI");
        }
    }

    #[test]
    fn fat_of_arbitrary_partitions_never_panics(
        bytes in proptest::collection::vec(any::<u8>(), 0..40_000),
    ) {
        let mut disk = MemDisk(bytes);
        if let Ok(mut fat) = Fat::open(&mut disk) {
            let _ = fat.find("\\EFI\\BOOT\\BOOTX64.EFI");
        }
    }

    #[test]
    fn yaml_loader_never_panics_on_arbitrary_text(text in "\\PC{0,400}") {
        let _ = serde_saphyr::from_str::<hephaestus::pipeline::spec::PipelineSpec>(&text);
        let _ = serde_saphyr::from_str::<hephaestus::pipeline::spec::ProfileSpec>(&text);
        let _ = hephaestus::glance::auth::parse_clouds_yaml(&text, "local", std::path::Path::new("c.yaml"));
    }

    #[test]
    fn json_of_nix_and_glance_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let _ = serde_json::from_slice::<Vec<hephaestus::nix::PathInfo>>(&bytes);
        let _ = serde_json::from_slice::<hephaestus::glance::Image>(&bytes);
    }

    #[test]
    fn image_info_json_never_panics(text in "\\PC{0,300}") {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("nix-support")).expect("mkdir");
        std::fs::write(dir.path().join(hephaestus::nix::IMAGE_INFO_PATH), &text).expect("write");
        let _ = hephaestus::nix::read_image_info(dir.path());
    }

    #[test]
    fn serial_console_reader_never_panics(chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..200), 0..20)) {
        let marker = hephaestus::boot::marker_for(None, "lucy").expect("default marker");
        let mut watcher = hephaestus::boot::serial::Watcher::new(marker);
        for chunk in &chunks {
            let _ = watcher.feed(chunk);
        }
    }
}

/// `valid_disk()`'s raw disk as a compressed qcow2 (`qemu-img convert -c`), checked to read
/// back the raw bytes exactly.
fn compressed_qcow2() -> &'static [u8] {
    static IMG: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    IMG.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tempdir");
        let raw = dir.path().join("d.raw");
        std::fs::write(&raw, &valid_disk().0).expect("write raw");
        let img = dir.path().join("c.qcow2");
        let ok = std::process::Command::new("qemu-img")
            .args(["convert", "-q", "-c", "-f", "raw", "-O", "qcow2"])
            .arg(&raw)
            .arg(&img)
            .status()
            .expect("qemu-img");
        assert!(ok.success());
        let info = qcow2::inspect(&img).expect("a sound compressed qcow2");
        assert!(info.compressed, "qemu-img -c stored compressed clusters");
        assert_eq!(
            read_whole_disk(&img).expect("a genuine -c image reads"),
            valid_disk().0,
            "a genuine -c image reads back the raw disk"
        );
        std::fs::read(&img).expect("read qcow2")
    })
}

/// Every guest byte of the qcow2 image at `path`, read through the guest reader.
fn read_whole_disk(path: &std::path::Path) -> Result<Vec<u8>, qcow2::Error> {
    let mut guest = qcow2::GuestReader::open(path)?;
    let size = guest.virtual_size();
    assert!(size <= 64 << 20, "a small test disk, not {size} bytes");
    guest.read_vec(0, size as usize)
}

/// Where a crafted image must be refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Caught {
    /// By `inspect`, which `verify` runs first: the header or the cluster map is wrong.
    ByInspect,
    /// Only by reading the guest disk: the map is sound, a cluster's contents are not.
    ByReading,
}

/// `base` with `edit` applied must be refused where `caught` says; returns the message.
fn refused_from(
    base: &[u8],
    what: &str,
    caught: Caught,
    edit: impl FnOnce(&mut Vec<u8>),
) -> String {
    let mut bytes = base.to_vec();
    edit(&mut bytes);
    let mut file = tempfile::NamedTempFile::new().expect("temp file");
    file.write_all(&bytes).expect("write");
    let inspected = qcow2::inspect(file.path());
    let err = match (caught, inspected) {
        (Caught::ByInspect, Err(e)) => e,
        (Caught::ByInspect, Ok(info)) => {
            let read = qcow2::GuestReader::open(file.path()).and_then(|mut g| {
                let mut buf = vec![0u8; 1 << 16];
                g.read_at(0, &mut buf)
            });
            panic!("{what}: inspect accepted it ({info:?}); reading: {read:?}")
        }
        (Caught::ByReading, Err(e)) => panic!("{what}: inspect refused it, not a read: {e}"),
        (Caught::ByReading, Ok(_)) => match read_whole_disk(file.path()) {
            Err(e) => e,
            Ok(_) => panic!("{what}: accepted, and every guest byte read"),
        },
    };
    let message = err.to_string();
    assert!(
        message.starts_with(&file.path().display().to_string()),
        "{what}: names the file: {message}"
    );
    message
}

/// A change made to a valid image.
type Edit = Box<dyn FnOnce(&mut Vec<u8>)>;

fn be32(bytes: &mut [u8], at: usize, value: u32) {
    bytes[at..at + 4].copy_from_slice(&value.to_be_bytes());
}

fn get_be64(bytes: &[u8], at: usize) -> u64 {
    u64::from_be_bytes(bytes[at..at + 8].try_into().expect("8 bytes"))
}

/// Where a qcow2 image keeps its metadata, read from its header and L1 table as qcow2.txt
/// lays them out.
struct Layout {
    cluster_bits: u32,
    l1: u64,
    refcount_table: u64,
    /// The L2 table of guest clusters 0.. (the first L1 entry).
    l2: u64,
}

/// Bits 9..=55 of L1 and standard L2 entries hold a host offset.
const OFFSET_MASK: u64 = 0x00ff_ffff_ffff_fe00;
const L2_COPIED: u64 = 1 << 63;
const L2_COMPRESSED: u64 = 1 << 62;

fn layout(bytes: &[u8]) -> Layout {
    let cluster_bits = u32::from_be_bytes(bytes[20..24].try_into().expect("4 bytes"));
    let l1 = get_be64(bytes, 40);
    let l2 = get_be64(bytes, l1 as usize) & OFFSET_MASK;
    assert_ne!(l2, 0, "guest cluster 0 has an L2 table");
    Layout {
        cluster_bits,
        l1,
        refcount_table: get_be64(bytes, 48),
        l2,
    }
}

/// A compressed cluster descriptor (qcow2.txt, "Compressed Clusters Descriptor") for `len`
/// bytes of deflate at `host`: the offset in the low 62 - (cluster_bits - 8) bits, the
/// number of 512-byte sectors after the first above them.
fn compressed_entry(cluster_bits: u32, host: u64, len: u64) -> u64 {
    let offset_bits = 62 - (cluster_bits - 8);
    let sectors = (host + len - 1) / 512 - host / 512;
    assert!(
        sectors < 1 << (cluster_bits - 8),
        "the stream fits a descriptor"
    );
    L2_COMPRESSED | (sectors << offset_bits) | host
}

/// Raw deflate (no zlib header), as QEMU writes compressed clusters.
fn deflate(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::best());
    enc.write_all(data).expect("deflate");
    enc.finish().expect("deflate")
}

/// `bytes` with `stream` appended and guest cluster 0 pointed at it as a compressed cluster.
fn point_cluster_0_at_new_stream(bytes: &mut Vec<u8>, stream: &[u8]) {
    let lay = layout(bytes);
    let host = bytes.len() as u64;
    bytes.extend_from_slice(stream);
    let entry = compressed_entry(lay.cluster_bits, host, stream.len() as u64);
    put_be64(bytes, lay.l2 as usize, entry);
}

#[test]
fn a_compressed_cluster_is_read_only_up_to_its_cluster_and_one_that_inflates_past_it_is_refused() {
    let base = compressed_qcow2();
    let lay = layout(base);
    let entry = get_be64(base, lay.l2 as usize);
    assert_ne!(
        entry & L2_COMPRESSED,
        0,
        "qemu-img compressed guest cluster 0"
    );
    let cluster = 1usize << lay.cluster_bits;

    // The control: a hand-made stream of exactly one cluster, appended the same way, reads
    // back; only what the stream holds beyond the cluster is refused.
    let mut exact = base.to_vec();
    point_cluster_0_at_new_stream(&mut exact, &deflate(&vec![0x5a; cluster]));
    let file = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(file.path(), &exact).expect("write");
    let got = read_whole_disk(file.path()).expect("a one-cluster stream reads");
    assert!(got[..cluster].iter().all(|&b| b == 0x5a));
    assert_eq!(got[cluster..], valid_disk().0[cluster..]);

    // Eight clusters' worth deflates to a few hundred bytes: a bomb that fits a descriptor.
    let message = refused_from(
        base,
        "a cluster inflating to 8 clusters",
        Caught::ByReading,
        |b| {
            point_cluster_0_at_new_stream(b, &deflate(&vec![0x5a; 8 * cluster]));
        },
    );
    assert!(
        message
            .contains("compressed cluster at guest offset 0 inflates past its 65536-byte cluster"),
        "{message}"
    );
    // One byte too many is as much a forgery as megabytes.
    let message = refused_from(
        base,
        "a cluster inflating one byte past",
        Caught::ByReading,
        |b| {
            point_cluster_0_at_new_stream(b, &deflate(&vec![0x5a; cluster + 1]));
        },
    );
    assert!(message.contains("inflates past its"), "{message}");
}

#[test]
fn crafted_hostile_qcow2_images_are_each_refused_clearly() {
    // Header fields: 20 cluster_bits, 24 size, 36 l1_size, 40 l1_table_offset,
    // 48 refcount_table_offset, 56 refcount_table_clusters, 60 nb_snapshots, 64 snapshots_offset.
    let plain = layout(valid_qcow2());
    let l1_at = plain.l1 as usize;
    // Guest cluster 0 (the GPT) is data in the plain image and compressed in the other.
    let data_at = plain.l2 as usize;
    let packed = layout(compressed_qcow2());
    let packed_at = packed.l2 as usize;
    let packed_entry = |host: u64| compressed_entry(packed.cluster_bits, host, 512);
    let data = |host: u64| -> Edit { Box::new(move |b| put_be64(b, data_at, L2_COPIED | host)) };
    let squeezed = |host: u64| -> Edit {
        let entry = packed_entry(host);
        Box::new(move |b| put_be64(b, packed_at, entry))
    };
    let plain_cases: Vec<(&str, &str, Edit)> = vec![
        (
            "an L1 table claiming terabytes",
            "is above QEMU's limit of 4194304 entries",
            Box::new(|b| {
                put_be64(b, 24, 1 << 50);
                be32(b, 36, u32::MAX);
            }),
        ),
        (
            "cluster_bits 8",
            "cluster_bits is 8",
            Box::new(|b| be32(b, 20, 8)),
        ),
        (
            "cluster_bits 40",
            "cluster_bits is 40",
            Box::new(|b| be32(b, 20, 40)),
        ),
        (
            "a virtual size of 2^63",
            "a 9223372036854775808-byte disk",
            Box::new(|b| put_be64(b, 24, 1 << 63)),
        ),
        (
            "an L1 table beyond the end of the file",
            "the L1 table (8 bytes at 1099511627776) runs past the end",
            Box::new(|b| put_be64(b, 40, 1 << 40)),
        ),
        (
            "an L2 table beyond the end of the file",
            "past the end of the file",
            Box::new(move |b| {
                put_be64(b, l1_at, (1u64 << 63) | (1 << 40));
            }),
        ),
        (
            "an L2 table that is the L1 table itself",
            "inside the L1 table",
            Box::new(move |b| {
                put_be64(b, l1_at, (1u64 << 63) | l1_at as u64);
            }),
        ),
        (
            "a refcount table beyond the end of the file",
            "the refcount table (1 cluster(s) at 1125899906842624)",
            Box::new(|b| put_be64(b, 48, 1 << 50)),
        ),
        (
            "absurd refcount table clusters",
            "the refcount table (4294967295 cluster(s)",
            Box::new(|b| be32(b, 56, u32::MAX)),
        ),
        (
            "absurd snapshots",
            "4294967295 snapshots is above QEMU's limit",
            Box::new(|b| {
                be32(b, 60, u32::MAX);
                put_be64(b, 64, 1 << 50);
            }),
        ),
        (
            "a data cluster beyond the end of the file",
            "guest cluster 0 points at host offset 1099511627776, past the end of the",
            data(1 << 40),
        ),
        (
            "a data cluster at offset 0, the header",
            "guest cluster 0 is marked allocated at host offset 0, the header",
            data(0),
        ),
        (
            "a data cluster that is the L1 table",
            "inside the L1 table",
            data(plain.l1),
        ),
        (
            "a data cluster that is the refcount table",
            "inside the refcount table",
            data(plain.refcount_table),
        ),
        (
            "a data cluster that is its own L2 table",
            "inside the L2 table at host offset",
            data(plain.l2),
        ),
    ];
    let compressed_cases: Vec<(&str, &str, Edit)> = vec![
        (
            "a compressed cluster beyond the end of the file",
            "past the end of the file",
            squeezed(1 << 40),
        ),
        (
            "a compressed cluster inside the header",
            "compressed guest cluster 0 points at host offset 512, inside the header",
            squeezed(512),
        ),
        (
            "a compressed cluster inside the L1 table",
            "inside the L1 table",
            squeezed(packed.l1),
        ),
        (
            "a compressed cluster inside the refcount table",
            "inside the refcount table",
            squeezed(packed.refcount_table + 1024),
        ),
        (
            "a compressed cluster inside its L2 table",
            "inside the L2 table at host offset",
            squeezed(packed.l2 + 512),
        ),
    ];
    let cases = plain_cases.into_iter().map(|c| (valid_qcow2(), c)).chain(
        compressed_cases
            .into_iter()
            .map(|c| (compressed_qcow2(), c)),
    );
    for (base, (what, says, edit)) in cases {
        let message = refused_from(base, what, Caught::ByInspect, edit);
        assert!(message.contains(says), "{what}: says {says:?}: {message}");
    }
}
