//! Something that holds a disk's bytes, read at any offset: a qcow2 guest, a raw disk in
//! memory, one partition of either.

use std::io;

/// Something that holds a disk's bytes: a qcow2 guest, a raw disk in memory, a partition.
pub trait Disk {
    /// Size of the disk in bytes.
    fn size(&self) -> u64;
    /// Fills `buf` with the bytes at `offset`; fails (never short-reads) past the end.
    fn read_exact_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<()>;
}

/// A raw disk image held in memory (tests, small fixtures).
#[derive(Debug, Clone, Default)]
pub struct MemDisk(pub Vec<u8>);

impl Disk for MemDisk {
    fn size(&self) -> u64 {
        self.0.len() as u64
    }

    fn read_exact_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        let src = usize::try_from(offset)
            .ok()
            .and_then(|start| self.0.get(start..start.checked_add(buf.len())?))
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!(
                        "cannot read {} bytes at offset {offset} of a {}-byte disk",
                        buf.len(),
                        self.0.len()
                    ),
                )
            })?;
        buf.copy_from_slice(src);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mem_disk_refuses_reads_past_the_end() {
        let mut d = MemDisk(vec![1, 2, 3, 4]);
        let mut b = [0u8; 2];
        d.read_exact_at(2, &mut b).unwrap();
        assert_eq!(b, [3, 4]);
        let err = d.read_exact_at(3, &mut b).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
        assert!(d.read_exact_at(u64::MAX, &mut b).is_err());
    }
}
