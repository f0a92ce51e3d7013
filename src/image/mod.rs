//! Reading built images without running them: qcow2 soundness, the partition table inside the
//! guest disk, file digests computed in one read, and the NAR hash of a Nix store path.
//!
//! Everything here is file reading (no processes, no network), so the `verify` stage can
//! run it on a blocking thread and the tests can feed it images made with `qemu-img`/`sfdisk`.
//!
//! # Public API
//! - [`qcow2::inspect`]`(path) -> Result<`[`qcow2::Qcow2Info`]`, `[`qcow2::Error`]`>`: header
//!   soundness (magic, version 2/3, no backing file, no external data file, no encryption,
//!   clean, no unknown incompatible features) plus a scan of the cluster map.
//! - [`qcow2::GuestReader::open`]`(path)` then [`partition::read_table`]`(&mut reader)` and
//!   [`partition::check_firmware`]`(&table, boot)`: the partition table read from inside the
//!   image must fit the profile's [`crate::firmware::Boot`]. [`partition::Slice`] (from
//!   [`partition::PartitionTable::esp`] / [`partition::Extent`]) reads one partition's bytes,
//!   e.g. the ESP's FAT ([`fat`]). Anything implementing [`disk::Disk`] works, including an
//!   in-memory raw disk ([`disk::MemDisk`]).
//! - [`bootable::precheck`]`(path, boot)`: what the firmware will look for is there (MBR boot
//!   code for bios; `\EFI\BOOT\BOOTX64.EFI` in the ESP for uefi), before anything boots.
//! - [`stream::Source::start`]`(file, store, consumers)`: one read of the image for every
//!   cloud it is uploaded to, as HTTP bodies ([`stream::Body::split`]), with the NAR hash
//!   and the digests computed on the bytes sent.
//! - [`digest::digest_file`]`(path) -> `[`digest::Digests`] (size, md5, sha256, sha512 in one
//!   read). [`digest::MultiHasher`] hashes chunks fed by another reader, each algorithm on its
//!   own thread with bounded memory; [`digest::SerialHasher`] all of them on the caller's
//!   thread (the stream's choice on machines of two CPUs or fewer, [`stream::Hashing`]).
//! - [`nar::nar_hash`]`(path) -> `[`nar::ComputedNar`] and [`nar::verify`]`(path, "sha256:…" |
//!   "sha256-…")`: the store path's NAR hash, compared with Nix's registered `narHash`.
//!
//! # Why not the `qcow` crate
//! `qcow` 1.2 (panda-re/qcow-rs) reads L1/L2, compressed (zlib and zstd) and zero clusters of
//! version 2 and 3, and exposes the header. It does not fit here:
//! - it builds C code: `flate2` with `zlib-ng-compat` (libz-sys → zlib-ng through `cmake`, which
//!   this machine and CI do not have) and `zstd-sys`;
//! - `Qcow2::reader` panics (`expect`) on files a user controls: an image with an empty L1
//!   table, or an unreadable first cluster;
//! - the reader ignores the external-data-file bit and reads "data" out of the qcow2 file
//!   itself, and it knows nothing about extended L2 entries (subclusters), so it would return
//!   wrong guest bytes instead of refusing;
//! - its reader is tied to `&mut R` borrows, and it depends on `thiserror` 1 and `binread`.
//!
//! The format ([qcow2.txt](https://gitlab.com/qemu-project/qemu/-/blob/master/docs/interop/qcow2.txt))
//! is small enough that the reader here (header, L1/L2, raw-deflate clusters, subclusters) is a
//! few hundred lines that refuse, with a reason, whatever they cannot read correctly. zstd
//! clusters are refused: decoding them would need a C library for one rare case.

pub mod bootable;
pub mod digest;
pub mod disk;
pub mod fat;
pub mod nar;
pub mod partition;
pub mod qcow2;
pub mod stream;

/// Lower-case hex of `bytes` (digests are reported and compared as hex text).
pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn hex_is_lower_case_and_padded() {
        assert_eq!(super::hex(&[0x00, 0x0f, 0xa0, 0xff]), "000fa0ff");
        assert_eq!(super::hex(&[]), "");
    }
}
