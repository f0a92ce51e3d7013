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

/// `valid_qcow2()` with `edit` applied; `inspect` and a guest read must refuse it.
fn refused(what: &str, edit: impl FnOnce(&mut Vec<u8>)) -> String {
    let mut bytes = valid_qcow2().to_vec();
    edit(&mut bytes);
    let mut file = tempfile::NamedTempFile::new().expect("temp file");
    file.write_all(&bytes).expect("write");
    let inspected = qcow2::inspect(file.path());
    let read = qcow2::GuestReader::open(file.path()).and_then(|mut g| {
        let mut buf = vec![0u8; 1 << 16];
        g.read_at(0, &mut buf)?;
        Ok(())
    });
    let err = match (inspected, read) {
        (Err(e), _) => e,
        (Ok(info), Err(e)) => {
            panic!("{what}: inspect accepted it ({info:?}) but reading failed: {e}")
        }
        (Ok(info), Ok(())) => panic!("{what}: accepted: {info:?}"),
    };
    err.to_string()
}

/// A change made to a valid image.
type Edit = Box<dyn FnOnce(&mut Vec<u8>)>;

fn be32(bytes: &mut [u8], at: usize, value: u32) {
    bytes[at..at + 4].copy_from_slice(&value.to_be_bytes());
}

#[test]
fn crafted_hostile_qcow2_images_are_each_refused_clearly() {
    // Header fields: 20 cluster_bits, 24 size, 36 l1_size, 40 l1_table_offset,
    // 48 refcount_table_offset, 56 refcount_table_clusters, 60 nb_snapshots, 64 snapshots_offset.
    let l1_at = u64::from_be_bytes(valid_qcow2()[40..48].try_into().unwrap()) as usize;
    let cases: Vec<(&str, Edit)> = vec![
        (
            "an L1 table claiming terabytes",
            Box::new(|b| {
                put_be64(b, 24, 1 << 50);
                be32(b, 36, u32::MAX);
            }),
        ),
        ("cluster_bits 8", Box::new(|b| be32(b, 20, 8))),
        ("cluster_bits 40", Box::new(|b| be32(b, 20, 40))),
        (
            "a virtual size of 2^63",
            Box::new(|b| put_be64(b, 24, 1 << 63)),
        ),
        (
            "an L1 table beyond the end of the file",
            Box::new(|b| put_be64(b, 40, 1 << 40)),
        ),
        (
            "an L2 table beyond the end of the file",
            Box::new(move |b| {
                put_be64(b, l1_at, (1u64 << 63) | (1 << 40));
            }),
        ),
        (
            "an L2 table that is the L1 table itself",
            Box::new(move |b| {
                put_be64(b, l1_at, (1u64 << 63) | l1_at as u64);
            }),
        ),
        (
            "a refcount table beyond the end of the file",
            Box::new(|b| put_be64(b, 48, 1 << 50)),
        ),
        (
            "absurd refcount table clusters",
            Box::new(|b| be32(b, 56, u32::MAX)),
        ),
        (
            "absurd snapshots",
            Box::new(|b| {
                be32(b, 60, u32::MAX);
                put_be64(b, 64, 1 << 50);
            }),
        ),
    ];
    for (what, edit) in cases {
        let message = refused(what, edit);
        assert!(!message.is_empty(), "{what}");
        assert!(
            message.contains(".tmp") || message.contains('/'),
            "{what}: names the file: {message}"
        );
    }
}
