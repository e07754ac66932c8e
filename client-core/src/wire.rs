//! Length-prefixed frames over an async byte stream.
//!
//! A frame is a 4-byte big-endian length followed by that many bytes. The reader checks the
//! declared length against the caller's limit *before* reading or allocating the body, and
//! tells a clean end of stream (between frames) from a truncated frame. The stream itself is
//! handed in by the caller; this module opens nothing.

use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use std::io;

/// Why a frame could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("frame of {len} bytes exceeds the limit of {limit} bytes")]
    TooLarge { len: usize, limit: usize },
    #[error("stream ended inside a frame: expected {expected} bytes, got {got}")]
    Truncated { expected: usize, got: usize },
    #[error("stream error: {0}")]
    Io(#[from] io::Error),
}

/// Writes one frame and flushes it.
pub async fn write_frame<W: AsyncWrite + Unpin>(writer: &mut W, payload: &[u8]) -> io::Result<()> {
    let len = u32::try_from(payload.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "frame longer than 4 GiB"))?;
    // One write per frame: on WebRTC every write becomes its own data-channel message, so
    // writing the prefix and the body separately would double the messages per round trip.
    let mut frame = Vec::with_capacity(4 + payload.len());
    frame.extend_from_slice(&len.to_be_bytes());
    frame.extend_from_slice(payload);
    // Larger frames go out in pieces, each flushed: the relay's WebRTC stack (libp2p-webrtc
    // 0.10 over webrtc-rs) fails a stream when one data-channel message exceeds 8 KiB, while
    // the browser's transport packs buffered writes into messages of up to 16 KiB until it is
    // flushed.
    for piece in frame.chunks(MAX_WRITE) {
        writer.write_all(piece).await?;
        writer.flush().await?;
    }
    Ok(())
}

/// The largest single write: one data-channel message, with room for its framing, below the
/// 8 KiB a native WebRTC peer reads at once.
pub const MAX_WRITE: usize = 8000;

/// Reads one frame of at most `limit` bytes. `Ok(None)` means the stream ended cleanly
/// between frames.
pub async fn read_frame<R: AsyncRead + Unpin>(
    reader: &mut R,
    limit: usize,
) -> Result<Option<Vec<u8>>, FrameError> {
    let mut prefix = [0u8; 4];
    let got = read_full(reader, &mut prefix).await?;
    if got == 0 {
        return Ok(None);
    }
    if got < prefix.len() {
        return Err(FrameError::Truncated { expected: 4, got });
    }
    let len = u32::from_be_bytes(prefix) as usize;
    if len > limit {
        return Err(FrameError::TooLarge { len, limit });
    }
    let mut body = vec![0u8; len];
    let got = read_full(reader, &mut body).await?;
    if got < len {
        return Err(FrameError::Truncated { expected: len, got });
    }
    Ok(Some(body))
}

/// Reads until `buf` is full or the stream ends; returns how many bytes were read.
async fn read_full<R: AsyncRead + Unpin>(reader: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]).await {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::executor::block_on;
    use futures::io::Cursor;

    #[test]
    fn frames_round_trip_and_end_cleanly() {
        let mut buf = Cursor::new(Vec::new());
        block_on(write_frame(&mut buf, b"one")).expect("write");
        block_on(write_frame(&mut buf, b"")).expect("write");
        let mut reader = Cursor::new(buf.into_inner());
        assert_eq!(
            block_on(read_frame(&mut reader, 16)).expect("read"),
            Some(b"one".to_vec())
        );
        assert_eq!(
            block_on(read_frame(&mut reader, 16)).expect("read"),
            Some(vec![])
        );
        assert_eq!(block_on(read_frame(&mut reader, 16)).expect("read"), None);
    }

    #[test]
    fn oversize_is_refused_before_reading_the_body() {
        let mut reader = Cursor::new(vec![0x7f, 0xff, 0xff, 0xff]);
        assert!(matches!(
            block_on(read_frame(&mut reader, 1024)),
            Err(FrameError::TooLarge {
                len: 0x7fff_ffff,
                limit: 1024
            })
        ));
    }

    /// Records the size of every write, like a transport that sends each as one message.
    struct Writes(Vec<usize>, Vec<u8>);
    impl futures::AsyncWrite for Writes {
        fn poll_write(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            buf: &[u8],
        ) -> std::task::Poll<io::Result<usize>> {
            self.0.push(buf.len());
            self.1.extend_from_slice(buf);
            std::task::Poll::Ready(Ok(buf.len()))
        }
        fn poll_flush(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<io::Result<()>> {
            std::task::Poll::Ready(Ok(()))
        }
        fn poll_close(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<io::Result<()>> {
            std::task::Poll::Ready(Ok(()))
        }
    }

    #[test]
    fn small_frames_are_one_write_and_large_ones_are_split() {
        let mut small = Writes(Vec::new(), Vec::new());
        block_on(write_frame(&mut small, b"probe")).expect("written");
        assert_eq!(small.0, vec![9]);
        let payload = vec![7u8; 20_000];
        let mut large = Writes(Vec::new(), Vec::new());
        block_on(write_frame(&mut large, &payload)).expect("written");
        assert_eq!(large.0, vec![MAX_WRITE, MAX_WRITE, 20_004 - 2 * MAX_WRITE]);
        let read = block_on(read_frame(&mut large.1.as_slice(), 30_000)).expect("read");
        assert_eq!(read, Some(payload));
    }

    #[test]
    fn truncation_is_reported() {
        let mut short_prefix = Cursor::new(vec![0, 0]);
        assert!(matches!(
            block_on(read_frame(&mut short_prefix, 16)),
            Err(FrameError::Truncated {
                expected: 4,
                got: 2
            })
        ));
        let mut short_body = Cursor::new(vec![0, 0, 0, 10, 1, 2, 3]);
        assert!(matches!(
            block_on(read_frame(&mut short_body, 16)),
            Err(FrameError::Truncated {
                expected: 10,
                got: 3
            })
        ));
    }
}
