//! Length-prefixed frames over an async byte stream.
//!
//! A frame is a 4-byte big-endian length followed by that many bytes. The reader checks the
//! declared length against the caller's limit *before* reading the body, allocates only as the
//! body arrives, and tells a clean end of stream (between frames) from a truncated frame. The stream itself is
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
    read_body(reader, len).await.map(Some)
}

/// The most a frame's body grows by before more of it has arrived.
pub const READ_CHUNK: usize = 64 * 1024;

/// Reads a body of `len` bytes as it arrives: the buffer grows with what was received (at most
/// doubling, never past `len`), so a peer that declares a large frame and sends little of it
/// costs little memory.
async fn read_body<R: AsyncRead + Unpin>(
    reader: &mut R,
    len: usize,
) -> Result<Vec<u8>, FrameError> {
    let mut body: Vec<u8> = Vec::with_capacity(len.min(READ_CHUNK));
    let mut chunk = vec![0u8; len.min(READ_CHUNK)];
    while body.len() < len {
        let want = (len - body.len()).min(chunk.len());
        let n = reader.read(&mut chunk[..want]).await?;
        if n == 0 {
            return Err(FrameError::Truncated {
                expected: len,
                got: body.len(),
            });
        }
        if body.capacity() - body.len() < n {
            let grown = (body.capacity() * 2).max(READ_CHUNK).min(len);
            body.reserve_exact(grown - body.len());
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Ok(body)
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

    #[test]
    fn a_large_declared_frame_costs_only_what_arrives() {
        // 4 MiB declared, 10 bytes sent: truncated, after allocating one chunk at most.
        let mut bytes = (4u32 * 1024 * 1024).to_be_bytes().to_vec();
        bytes.extend_from_slice(b"0123456789");
        let mut reader = Cursor::new(bytes);
        assert!(matches!(
            block_on(read_frame(&mut reader, 8 * 1024 * 1024)),
            Err(FrameError::Truncated {
                expected: 4_194_304,
                got: 10
            })
        ));
        // A body of several chunks, arriving a few bytes at a time, comes out whole.
        let payload: Vec<u8> = (0..(3 * READ_CHUNK + 17)).map(|i| i as u8).collect();
        let mut framed = Cursor::new(Vec::new());
        block_on(write_frame(&mut framed, &payload)).expect("write");
        let mut trickle = Trickle(framed.into_inner(), 0);
        assert_eq!(
            block_on(read_frame(&mut trickle, 1 << 20)).expect("read"),
            Some(payload)
        );
    }

    /// Hands out at most 1000 bytes per read.
    struct Trickle(Vec<u8>, usize);
    impl futures::AsyncRead for Trickle {
        fn poll_read(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            buf: &mut [u8],
        ) -> std::task::Poll<io::Result<usize>> {
            let at = self.1;
            let n = buf.len().min(1000).min(self.0.len() - at);
            buf[..n].copy_from_slice(&self.0[at..at + n]);
            self.1 += n;
            std::task::Poll::Ready(Ok(n))
        }
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
