//! Protocol names, message types and their size limits.
//!
//! Every protocol is versioned by name (`/aqueduct/<name>/<version>`). Every message has a
//! maximum encoded size; a peer that sends more is answered with an error and its stream is
//! closed. Browsers open every stream (relays open none toward browsers: a stream a relay
//! opened first can be lost by the browser's WebRTC transport), so each protocol is written as
//! "the dialer asks, the listener answers", possibly many times on one stream.

use borsh::{BorshDeserialize, BorshSerialize};
use serde::{Deserialize, Serialize};

/// The network id of a development network started by `cargo xtask run`.
pub const DEV_NETWORK_ID: &str = "aqueduct-dev";

/// Status and round-trip probe. The browser keeps one stream open and sends a probe every so
/// often; the relay answers each with its status. Measuring on a long-lived stream of our own
/// (rather than with libp2p ping, or a new stream per probe) keeps stream set-up out of the
/// figure and does not depend on the relay opening anything.
pub const STATUS_PROTOCOL: &str = "/aqueduct/status/1";

/// Largest status frame either side accepts.
pub const MAX_STATUS_FRAME: usize = 1024;

/// What the browser sends on the status stream.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub enum StatusRequest {
    /// Asks for a [`StatusResponse::Pong`] echoing `seq`.
    Probe { seq: u64 },
}

/// What the relay answers on the status stream.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub enum StatusResponse {
    Pong {
        seq: u64,
        status: RelayStatus,
    },
    /// The request could not be served; the relay closes the stream after sending this.
    Error(ProtocolError),
}

/// A relay's view of itself, as sent in every pong.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct RelayStatus {
    pub network_id: String,
    pub version: String,
    pub uptime_ms: u64,
    pub connected_peers: u32,
}

/// An error a relay reports on a stream before closing it.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize, thiserror::Error)]
#[error("{code:?}: {message}")]
pub struct ProtocolError {
    pub code: ErrorCode,
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub enum ErrorCode {
    /// The frame did not decode as a message of this protocol.
    Malformed,
    /// The frame's declared length exceeds the protocol's limit.
    TooLarge,
    /// The relay is at its limit for this protocol; try again later.
    Busy,
}

/// What `GET /api/info` on a relay's HTTP server returns, as JSON. The browser uses it to find
/// the relay's WebRTC addresses; it trusts none of it beyond that: the WebRTC handshake proves
/// the peer id, and everything else is checked against signatures and proofs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RelayInfo {
    pub peer_id: String,
    /// Full webrtc-direct multiaddrs, ending in `/certhash/…/p2p/<peer id>`.
    pub webrtc: Vec<String>,
    pub version: String,
    pub network_id: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encoding::{decode, encode};

    #[test]
    fn status_messages_fit_their_limit() {
        let pong = StatusResponse::Pong {
            seq: u64::MAX,
            status: RelayStatus {
                network_id: "a".repeat(64),
                version: "0.1.0".into(),
                uptime_ms: u64::MAX,
                connected_peers: u32::MAX,
            },
        };
        let bytes = encode(&pong);
        assert!(bytes.len() < MAX_STATUS_FRAME);
        assert_eq!(decode::<StatusResponse>(&bytes, MAX_STATUS_FRAME), Ok(pong));
    }

    #[test]
    fn unknown_variant_is_malformed() {
        assert!(decode::<StatusRequest>(&[9, 0, 0, 0, 0, 0, 0, 0, 0], MAX_STATUS_FRAME).is_err());
    }
}
