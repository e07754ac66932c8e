//! Relay addresses, as a relay announces them or a person pastes them: webrtc-direct
//! multiaddrs that carry the relay's certificate hash (so the browser can check the DTLS
//! certificate without a CA) and its peer id (so the Noise handshake proves who answered).

use libp2p_identity::PeerId;
use multiaddr::{Multiaddr, Protocol};

/// Why an address cannot be dialed from a browser, in words that say what is missing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddrError {
    #[error("not a multiaddr ({0})")]
    Parse(String),
    #[error(
        "a browser reaches relays over webrtc-direct: the address needs /udp/<port>/webrtc-direct"
    )]
    NotWebrtcDirect,
    #[error(
        "the address needs the relay's certificate hash (/certhash/…); copy it from the relay's `node-relay id` output or its /api/info"
    )]
    NoCertHash,
    #[error("the address needs the relay's peer id (/p2p/…)")]
    NoPeerId,
}

/// Checks a relay address and returns the relay's peer id with it.
pub fn parse_relay_addr(text: &str) -> Result<(PeerId, Multiaddr), AddrError> {
    let addr: Multiaddr = text
        .trim()
        .parse()
        .map_err(|e: multiaddr::Error| AddrError::Parse(e.to_string()))?;
    let protocols: Vec<Protocol> = addr.iter().collect();
    if !protocols
        .iter()
        .any(|p| matches!(p, Protocol::WebRTCDirect))
    {
        return Err(AddrError::NotWebrtcDirect);
    }
    if !protocols.iter().any(|p| matches!(p, Protocol::Certhash(_))) {
        return Err(AddrError::NoCertHash);
    }
    let peer = protocols
        .iter()
        .find_map(|p| match p {
            Protocol::P2p(id) => Some(*id),
            _ => None,
        })
        .ok_or(AddrError::NoPeerId)?;
    Ok((peer, addr))
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "/ip4/127.0.0.1/udp/9090/webrtc-direct/certhash/uEiDjv-d4OSfIQbbrDv94qe8l8kAoPT_evZiauYvPeBvjfQ/p2p/12D3KooWHq7mB9Z2XG1adSSBeu1dDqPMK1tCK9bkidHLHmSdhMhy";

    #[test]
    fn a_relay_address_gives_its_peer_id() {
        let (peer, addr) = parse_relay_addr(&format!("  {GOOD}\n")).expect("valid");
        assert_eq!(
            peer.to_string(),
            "12D3KooWHq7mB9Z2XG1adSSBeu1dDqPMK1tCK9bkidHLHmSdhMhy"
        );
        assert_eq!(addr.to_string(), GOOD);
    }

    #[test]
    fn each_missing_part_is_named() {
        assert!(matches!(
            parse_relay_addr("relay.example.com:9090"),
            Err(AddrError::Parse(_))
        ));
        assert_eq!(
            parse_relay_addr(
                "/ip4/127.0.0.1/tcp/9090/p2p/12D3KooWHq7mB9Z2XG1adSSBeu1dDqPMK1tCK9bkidHLHmSdhMhy"
            ),
            Err(AddrError::NotWebrtcDirect)
        );
        assert_eq!(
            parse_relay_addr(
                "/ip4/127.0.0.1/udp/9090/webrtc-direct/p2p/12D3KooWHq7mB9Z2XG1adSSBeu1dDqPMK1tCK9bkidHLHmSdhMhy"
            ),
            Err(AddrError::NoCertHash)
        );
        let no_peer = GOOD.split("/p2p/").next().unwrap_or_default();
        assert_eq!(parse_relay_addr(no_peer), Err(AddrError::NoPeerId));
    }
}
