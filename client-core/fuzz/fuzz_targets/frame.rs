//! Frames as they arrive on every stream: a 4-byte length, then the body, in pieces of any
//! size. Every frame read must be within the limit and the bytes must add up; nothing may
//! panic or allocate for a length the stream does not back.
#![no_main]

use client_core::wire::{FrameError, read_frame};
use client_core_fuzz::Pieces;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let [piece, limit, stream @ ..] = data else {
        return;
    };
    let piece = usize::from(*piece) * 97 + 1;
    let limit = usize::from(*limit) * 1024;
    let mut reader = Pieces::new(stream, piece);
    let mut consumed = 0usize;
    futures::executor::block_on(async {
        loop {
            match read_frame(&mut reader, limit).await {
                Ok(Some(frame)) => {
                    assert!(frame.len() <= limit, "a frame over the limit was read");
                    consumed += 4 + frame.len();
                    assert!(consumed <= stream.len(), "read more than the stream held");
                }
                Ok(None) => {
                    assert_eq!(consumed, stream.len(), "a clean end left bytes unread");
                    break;
                }
                Err(FrameError::TooLarge { len, .. }) => {
                    assert!(len > limit);
                    break;
                }
                Err(FrameError::Truncated { expected, got }) => {
                    assert!(got < expected);
                    break;
                }
                Err(FrameError::Io(e)) => panic!("a slice reader failed: {e}"),
            }
        }
    });
});
