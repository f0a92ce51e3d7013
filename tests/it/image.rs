//! Image inspection against real tools: disks partitioned by `sfdisk`, converted by `qemu-img`
//! (compressed, version 2, extended L2), refused images made by `qemu-img` itself, digests
//! compared with coreutils and NAR hashes with `nix-hash`/`nix-store --dump`.

use hephaestus::firmware::Boot;
use hephaestus::image::disk::Disk;
use hephaestus::image::qcow2::GuestReader;
use hephaestus::image::qcow2::{self, CompressionType, ErrorKind};
use hephaestus::image::{digest, nar, partition};
use std::fs::{self, OpenOptions};
use std::os::unix::fs::{FileExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

const MIB: u64 = 1 << 20;
const ESP: &str = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B";
const BIOS_BOOT: &str = "21686148-6449-6E6F-744E-656564454649";
const LINUX: &str = "0FC63DAF-8483-4772-8E79-3D69D8477DE4";

/// Runs a command, failing the test with argv, status, stdout and stderr when it fails.
fn run(cmd: &mut Command) -> String {
    let argv = format!("{cmd:?}");
    let out = cmd.output().unwrap_or_else(|e| {
        panic!("cannot run {argv}: {e} (this test needs qemu-utils, fdisk, coreutils and nix-bin)")
    });
    assert!(
        out.status.success(),
        "{argv} failed with {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A sparse raw disk of `size` bytes partitioned by `sfdisk` with `script`.
fn raw_disk(dir: &Path, name: &str, size: u64, script: &str) -> PathBuf {
    let path = dir.join(name);
    fs::File::create(&path).unwrap().set_len(size).unwrap();
    let mut child = Command::new("sfdisk")
        .args(["--quiet", "--no-reread", "--no-tell-kernel"])
        .arg(&path)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run sfdisk: {e} (apt-get install fdisk)"));
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), script.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "sfdisk {} failed with {}: {}",
        path.display(),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    path
}

fn convert(raw: &Path, out: &Path, extra: &[&str]) -> PathBuf {
    run(Command::new("qemu-img")
        .args(["convert", "-f", "raw", "-O", "qcow2"])
        .args(extra)
        .arg(raw)
        .arg(out));
    out.to_path_buf()
}

fn write_at(path: &Path, offset: u64, bytes: &[u8]) {
    let f = OpenOptions::new().write(true).open(path).unwrap();
    f.write_all_at(bytes, offset).unwrap();
}

/// Compressible but varied data, so `-c` really stores compressed clusters.
fn text_pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 64);
    let mut i = seed;
    while out.len() < len {
        out.extend_from_slice(format!("block {i} of the hephaestus test disk\n").as_bytes());
        i += 1;
    }
    out.truncate(len);
    out
}

/// Incompressible data (qemu-img keeps such clusters uncompressed even with `-c`).
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn gpt_esp_script() -> String {
    format!(
        "label: gpt\nstart=2048, size=16384, type={ESP}, name=\"ESP\"\nstart=18432, type={LINUX}\n"
    )
}

fn table_of(path: &Path) -> (GuestReader, partition::PartitionTable) {
    let mut reader = GuestReader::open(path).unwrap_or_else(|e| panic!("{e}"));
    let table = partition::read_table(&mut reader).unwrap_or_else(|e| panic!("{e}"));
    (reader, table)
}

#[test]
fn gpt_with_esp_fits_uefi_and_not_bios() {
    let dir = tempfile::tempdir().unwrap();
    let raw = raw_disk(dir.path(), "uefi.raw", 64 * MIB, &gpt_esp_script());
    // A marker inside the ESP, read back through the qcow2 reader and a partition slice.
    write_at(&raw, MIB + 4096, b"FAT-MARKER");
    let img = convert(&raw, &dir.path().join("uefi.qcow2"), &[]);

    let info = qcow2::inspect(&img).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(info.version, 3);
    assert_eq!(info.virtual_size, 64 * MIB);
    assert_eq!(info.cluster_size, 65536);
    assert!(!info.compressed);
    assert!(info.clusters.data > 0);

    let (mut reader, table) = table_of(&img);
    let gpt = table.gpt.as_ref().expect("a GPT");
    assert_eq!(gpt.partitions.len(), 2);
    assert_eq!(gpt.partitions[0].type_guid.to_string(), ESP);
    assert_eq!(gpt.partitions[0].name, "ESP");
    assert!(table.mbr.as_ref().is_some_and(|m| m.only_protective()));

    let fit = partition::check_firmware(&table, Boot::Uefi).unwrap_or_else(|e| panic!("{e}"));
    let esp = fit.esp.expect("the ESP extent");
    assert_eq!((esp.offset, esp.len), (MIB, 8 * MIB));
    let mut slice = partition::Slice::new(&mut reader, esp).unwrap();
    let mut marker = [0u8; 10];
    slice.read_exact_at(4096, &mut marker).unwrap();
    assert_eq!(&marker, b"FAT-MARKER");

    let err = partition::check_firmware(&table, Boot::Bios)
        .unwrap_err()
        .to_string();
    assert!(err.contains("protective MBR"), "{err}");
    assert!(err.contains("bios firmware"), "{err}");
    assert!(err.contains("partitionTableType = \"legacy\""), "{err}");
}

#[test]
fn mbr_fits_bios_and_not_uefi() {
    let dir = tempfile::tempdir().unwrap();
    let raw = raw_disk(
        dir.path(),
        "bios.raw",
        32 * MIB,
        "label: dos\nstart=2048, type=83, bootable\n",
    );
    write_at(&raw, 0, &[0xEB, 0x63, 0x90]);
    let img = convert(&raw, &dir.path().join("bios.qcow2"), &[]);
    qcow2::inspect(&img).unwrap_or_else(|e| panic!("{e}"));
    let (_, table) = table_of(&img);
    assert!(table.gpt.is_none());
    let mbr = table.mbr.as_ref().expect("an MBR");
    assert!(mbr.boot_code);
    assert_eq!(mbr.entries.len(), 1);
    assert!(mbr.entries[0].bootable);

    let fit = partition::check_firmware(&table, Boot::Bios).unwrap_or_else(|e| panic!("{e}"));
    assert!(fit.mbr_boot_code);
    let err = partition::check_firmware(&table, Boot::Uefi)
        .unwrap_err()
        .to_string();
    assert!(err.contains("MBR partition table and no GPT"), "{err}");
    assert!(err.contains("partitionTableType = \"efi\""), "{err}");
    assert!(err.contains("set boot: bios"), "{err}");
}

#[test]
fn gpt_with_bios_boot_partition_fits_bios() {
    let dir = tempfile::tempdir().unwrap();
    let script =
        format!("label: gpt\nstart=2048, size=2048, type={BIOS_BOOT}\nstart=4096, type={LINUX}\n");
    let raw = raw_disk(dir.path(), "legacy-gpt.raw", 32 * MIB, &script);
    let img = convert(&raw, &dir.path().join("legacy-gpt.qcow2"), &[]);
    let (_, table) = table_of(&img);
    let fit = partition::check_firmware(&table, Boot::Bios).unwrap_or_else(|e| panic!("{e}"));
    assert!(fit.bios_boot.is_some());
    let err = partition::check_firmware(&table, Boot::Uefi)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("no EFI") || err.contains("1 BIOS boot"),
        "{err}"
    );
}

/// Every variant must read back exactly the raw bytes, cluster by cluster.
#[test]
fn compressed_version2_and_small_cluster_images_read_back_the_raw_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let size = 16 * MIB;
    let raw = raw_disk(dir.path(), "data.raw", size, &gpt_esp_script());
    write_at(&raw, MIB, &text_pattern(3 * MIB as usize, 0));
    write_at(&raw, 5 * MIB + 123, &noise(MIB as usize, 7));
    write_at(&raw, 9 * MIB - 5, &text_pattern(70_000, 99));
    write_at(&raw, size - 4096, &text_pattern(4096, 5));
    let want = fs::read(&raw).unwrap();

    let variants: &[(&str, &[&str], bool, u32)] = &[
        ("plain", &[], false, 3),
        ("compressed", &["-c"], true, 3),
        ("v2", &["-o", "compat=0.10"], false, 2),
        ("v2-compressed", &["-c", "-o", "compat=0.10"], true, 2),
        (
            "small-clusters",
            &["-c", "-o", "cluster_size=4096"],
            true,
            3,
        ),
        ("big-clusters", &["-o", "cluster_size=2M"], false, 3),
        (
            "extended-l2-compressed",
            &["-c", "-o", "extended_l2=on,cluster_size=128k"],
            true,
            3,
        ),
        (
            "extended-l2",
            &["-o", "extended_l2=on,cluster_size=128k"],
            false,
            3,
        ),
    ];
    for (name, args, compressed, version) in variants {
        let img = convert(&raw, &dir.path().join(format!("{name}.qcow2")), args);
        let info = qcow2::inspect(&img).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(info.version, *version, "{name}");
        assert_eq!(info.compressed, *compressed, "{name}: {info:?}");
        assert_eq!(info.virtual_size, size, "{name}");
        let mut reader = GuestReader::open(&img).unwrap();
        // Odd-sized reads cross cluster boundaries at varying places.
        let mut got = vec![0u8; want.len()];
        let mut at = 0usize;
        while at < got.len() {
            let n = (777_777).min(got.len() - at);
            reader
                .read_at(at as u64, &mut got[at..at + n])
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            at += n;
        }
        assert!(got == want, "{name}: guest bytes differ from the raw disk");
        let (_, table) = table_of(&img);
        partition::check_firmware(&table, Boot::Uefi).unwrap_or_else(|e| panic!("{name}: {e}"));
        let err = reader.read_at(size - 1, &mut [0u8; 2]).unwrap_err();
        assert!(matches!(err.kind(), ErrorKind::OutOfRange { .. }), "{err}");
    }
}

/// Zero-flagged clusters and subclusters written by QEMU itself (`qemu-io`).
#[test]
fn zero_clusters_and_subclusters_read_as_qemu_wrote_them() {
    let dir = tempfile::tempdir().unwrap();
    for (name, opts) in [
        ("zero", "cluster_size=64k"),
        ("sub", "extended_l2=on,cluster_size=64k"),
    ] {
        let img = dir.path().join(format!("{name}.qcow2"));
        run(Command::new("qemu-img")
            .args(["create", "-q", "-f", "qcow2", "-o", opts])
            .arg(&img)
            .arg("4M"));
        for cmd in [
            "write -P 0xab 0 1M",
            "write -z 64k 128k",
            "write -P 0xcd 2M 4k",
            "write -P 0xef 3151872 2k",
        ] {
            run(Command::new("qemu-io")
                .args(["-f", "qcow2", "-c", cmd])
                .arg(&img));
        }
        let info = qcow2::inspect(&img).unwrap_or_else(|e| panic!("{name}: {e}"));
        if name == "zero" {
            assert_eq!(info.clusters.zero, 2, "{name}: {info:?}");
        } else {
            assert!(info.extended_l2);
        }
        let mut want = vec![0u8; 4 * MIB as usize];
        want[..MIB as usize].fill(0xab);
        want[65536..3 * 65536].fill(0);
        want[2 * MIB as usize..2 * MIB as usize + 4096].fill(0xcd);
        let s = 3 * MIB as usize + 6144;
        want[s..s + 2048].fill(0xef);
        let mut reader = GuestReader::open(&img).unwrap();
        let got = reader.read_vec(0, want.len()).unwrap();
        assert!(
            got == want,
            "{name}: guest bytes differ from what qemu-io wrote"
        );
    }
}

#[test]
fn backing_file_is_refused_with_its_name() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("base.qcow2");
    run(Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2"])
        .arg(&base)
        .arg("8M"));
    let overlay = dir.path().join("overlay.qcow2");
    run(Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2", "-F", "qcow2", "-b"])
        .arg(&base)
        .arg(&overlay));
    let err = qcow2::inspect(&overlay).unwrap_err();
    assert!(
        matches!(err.kind(), ErrorKind::BackingFile { name } if name.ends_with("base.qcow2")),
        "{err}"
    );
    let msg = err.to_string();
    assert!(msg.starts_with(&overlay.display().to_string()), "{msg}");
    assert!(msg.contains("depend on a path of the build host"), "{msg}");
}

#[test]
fn raw_disk_is_refused_and_described() {
    let dir = tempfile::tempdir().unwrap();
    let raw = raw_disk(dir.path(), "disk.raw", 16 * MIB, &gpt_esp_script());
    let msg = qcow2::inspect(&raw).unwrap_err().to_string();
    assert!(msg.contains("is not a qcow2 image"), "{msg}");
    assert!(msg.contains("a raw disk image with a GPT"), "{msg}");

    let blank = dir.path().join("blank.raw");
    fs::File::create(&blank).unwrap().set_len(MIB).unwrap();
    let msg = qcow2::inspect(&blank).unwrap_err().to_string();
    assert!(msg.contains("zeros"), "{msg}");
}

#[test]
fn external_data_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("meta.qcow2");
    run(Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2", "-o"])
        .arg(format!(
            "data_file={}",
            dir.path().join("data.raw").display()
        ))
        .arg(&img)
        .arg("8M"));
    let err = qcow2::inspect(&img).unwrap_err();
    assert!(
        matches!(err.kind(), ErrorKind::ExternalDataFile { name: Some(n) } if n.ends_with("data.raw")),
        "{err}"
    );
    assert!(err.to_string().contains("outside the qcow2 file"), "{err}");
}

#[test]
fn encrypted_image_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("enc.qcow2");
    run(Command::new("qemu-img")
        .args([
            "create",
            "-q",
            "-f",
            "qcow2",
            "--object",
            "secret,id=sec0,data=not-a-real-key",
            "-o",
            "encrypt.format=luks,encrypt.key-secret=sec0,encrypt.iter-time=10",
        ])
        .arg(&img)
        .arg("8M"));
    let msg = qcow2::inspect(&img).unwrap_err().to_string();
    assert!(msg.contains("is encrypted (LUKS)"), "{msg}");
    assert!(msg.contains("without the key"), "{msg}");
}

#[test]
fn zstd_compressed_clusters_are_refused_but_zstd_header_alone_is_not() {
    let dir = tempfile::tempdir().unwrap();
    let raw = raw_disk(dir.path(), "z.raw", 16 * MIB, &gpt_esp_script());
    write_at(&raw, MIB, &text_pattern(MIB as usize, 3));
    let plain = convert(
        &raw,
        &dir.path().join("zstd-plain.qcow2"),
        &["-o", "compression_type=zstd"],
    );
    let info = qcow2::inspect(&plain).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(info.compression_type, CompressionType::Zstd);
    assert!(!info.compressed);

    let packed = convert(
        &raw,
        &dir.path().join("zstd.qcow2"),
        &["-c", "-o", "compression_type=zstd"],
    );
    let msg = qcow2::inspect(&packed).unwrap_err().to_string();
    assert!(msg.contains("zstd-compressed clusters"), "{msg}");
    assert!(msg.contains("compression_type=zlib"), "{msg}");
}

/// Dirty, corrupt and unknown feature bits, set in a real image's header.
#[test]
fn incompatible_feature_bits_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (1u64, "not closed cleanly"),
        (2, "marked corrupt"),
        ((1 << 6) | (1 << 63), "bit 6, bit 63"),
    ];
    for (bits, words) in cases {
        let img = dir.path().join(format!("bits-{bits}.qcow2"));
        run(Command::new("qemu-img")
            .args(["create", "-q", "-f", "qcow2"])
            .arg(&img)
            .arg("8M"));
        write_at(&img, 72, &bits.to_be_bytes());
        let msg = qcow2::inspect(&img).unwrap_err().to_string();
        assert!(msg.contains(words), "{msg}");
    }
}

#[test]
fn digests_equal_coreutils() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("blob");
    // Not a multiple of the chunk size, with a sparse hole in the middle.
    let mut data = noise(5 * MIB as usize + 12_345, 11);
    data[MIB as usize..2 * MIB as usize].fill(0);
    fs::write(&path, &data).unwrap();
    let d = digest::digest_file(&path).unwrap();
    assert_eq!(d.size, data.len() as u64);
    for (tool, ours) in [
        ("md5sum", &d.md5),
        ("sha256sum", &d.sha256),
        ("sha512sum", &d.sha512),
    ] {
        let out = run(Command::new(tool).arg(&path));
        let theirs = out.split_whitespace().next().unwrap_or_default();
        assert_eq!(ours, theirs, "{tool}");
    }
}

fn nar_tree(root: &Path) {
    fs::create_dir_all(root.join("share/doc")).unwrap();
    fs::create_dir_all(root.join("empty")).unwrap();
    fs::write(root.join("nixos.qcow2"), noise(300_001, 5)).unwrap();
    fs::write(root.join("share/doc/README"), "seven\n").unwrap();
    fs::write(root.join("share/zero"), "").unwrap();
    fs::create_dir_all(root.join("bin")).unwrap();
    fs::write(root.join("bin/tool"), "#!/bin/sh\necho hi\n").unwrap();
    fs::set_permissions(root.join("bin/tool"), fs::Permissions::from_mode(0o755)).unwrap();
    std::os::unix::fs::symlink("../share/doc/README", root.join("bin/readme")).unwrap();
    std::os::unix::fs::symlink("does-not-exist", root.join("dangling")).unwrap();
    // Names whose byte order differs from a locale's order.
    fs::write(root.join("B"), "upper").unwrap();
    fs::write(root.join("a"), "lower").unwrap();
    fs::write(root.join("a-b"), "dash").unwrap();
}

#[test]
fn nar_serialisation_and_hash_equal_nix() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("out");
    nar_tree(&root);

    let ours = {
        let mut v = Vec::new();
        nar::dump(&root, &mut v).unwrap();
        v
    };
    let theirs = Command::new("nix-store")
        .arg("--dump")
        .arg(&root)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run nix-store: {e} (install Nix: scripts/install-nix.sh)")
        });
    assert!(
        theirs.status.success(),
        "nix-store --dump failed: {theirs:?}"
    );
    assert!(
        ours == theirs.stdout,
        "NAR bytes differ from nix-store --dump"
    );

    let hash = nar::nar_hash(&root).unwrap();
    assert_eq!(hash.nar_size, ours.len() as u64);
    let nix32 = run(Command::new("nix-hash")
        .args(["--type", "sha256", "--base32"])
        .arg(&root));
    let expected = format!("sha256:{}", nix32.trim());
    assert_eq!(hash.to_nix32(), expected);
    nar::verify(&root, &expected).unwrap();
    let sri = hash.to_sri();
    nar::verify(&root, &sri).unwrap();

    // A single file is a store path too.
    let file = root.join("nixos.qcow2");
    let nix32 = run(Command::new("nix-hash")
        .args(["--type", "sha256", "--base32"])
        .arg(&file));
    nar::verify(&file, &format!("sha256:{}", nix32.trim())).unwrap();

    // Any change is caught, and both values are shown.
    fs::write(root.join("share/zero"), "x").unwrap();
    let msg = nar::verify(&root, &expected).unwrap_err().to_string();
    assert!(msg.contains(&expected), "{msg}");
    assert!(msg.contains("Nix registered"), "{msg}");
}
