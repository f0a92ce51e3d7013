//! An image file as a stream of chunks for an HTTP body, counted as it goes.

use crate::progress::Progress;
use bytes::Bytes;
use futures::Stream;
use std::path::Path;
use tokio::io::AsyncReadExt;

/// Bytes read from the file and handed to the HTTP client at a time.
pub const CHUNK: usize = 1 << 20;

/// The file at `path` as a stream of chunks of [`CHUNK`] bytes. At most a couple of chunks are
/// in memory at any time, because the HTTP client pulls the next one only after writing the
/// last; each chunk is counted in `progress` when it is handed over.
pub async fn file_chunks(
    path: &Path,
    progress: Progress,
) -> std::io::Result<impl Stream<Item = std::io::Result<Bytes>> + Send + 'static> {
    let file = tokio::fs::File::open(path).await?;
    Ok(futures::stream::try_unfold(file, move |mut file| {
        let progress = progress.clone();
        async move {
            let mut buf = vec![0u8; CHUNK];
            let mut filled = 0;
            while filled < CHUNK {
                let n = file.read(&mut buf[filled..]).await?;
                if n == 0 {
                    break;
                }
                filled += n;
            }
            if filled == 0 {
                return Ok(None);
            }
            buf.truncate(filled);
            progress.add(filled as u64);
            Ok(Some((Bytes::from(buf), file)))
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::TryStreamExt;

    #[tokio::test]
    async fn chunks_carry_the_whole_file_and_are_counted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let data: Vec<u8> = (0..CHUNK + 10).map(|i| (i % 251) as u8).collect();
        std::fs::write(&path, &data).unwrap();
        let progress = Progress::default();
        let chunks: Vec<Bytes> = file_chunks(&path, progress.clone())
            .await
            .unwrap()
            .try_collect()
            .await
            .unwrap();
        assert_eq!(chunks.len(), 2);
        assert_eq!(chunks.concat(), data);
        assert_eq!(progress.sent(), data.len() as u64);
    }
}
