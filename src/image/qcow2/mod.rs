//! qcow2 images: the header's soundness (`header`), the guest disk read through the cluster
//! map ([`GuestReader`]), and [`inspect`], which checks both and is what `verify` calls.

mod header;
mod reader;

pub use header::*;
pub use reader::GuestReader;

use std::path::Path;

/// Checks that `path` is a sound, publishable qcow2 image and describes it.
///
/// Reads the header, refuses what must not be published ([`Header::check_publishable`]) and
/// walks the cluster map once (every L2 table), so a broken map or zstd-compressed clusters
/// are found here rather than halfway through the partition check.
pub fn inspect(path: &Path) -> Result<Qcow2Info, Error> {
    let mut reader = GuestReader::open(path)?;
    let clusters = reader.scan()?;
    let h = reader.header().clone();
    if clusters.compressed > 0 && h.compression_type != CompressionType::Zlib {
        return Err(Error::new(
            path,
            ErrorKind::UnsupportedCompression {
                compression: h.compression_type,
            },
        ));
    }
    Ok(Qcow2Info {
        version: h.version,
        virtual_size: h.size,
        cluster_size: h.cluster_size(),
        file_size: reader.file_size(),
        compression_type: h.compression_type,
        compressed: clusters.compressed > 0,
        clusters,
        snapshots: h.nb_snapshots,
        extended_l2: h.extended_l2(),
        lazy_refcounts: h.compatible_features & COMPATIBLE_LAZY_REFCOUNTS != 0,
        refcount_bits: 1 << h.refcount_order.min(6),
    })
}
