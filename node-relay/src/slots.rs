//! Caps on concurrent streams of one protocol, in total and per peer.

use libp2p::PeerId;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Counts open streams per peer and in total; a [`Slot`] gives its place back when dropped.
pub struct Slots {
    max_total: usize,
    max_per_peer: u32,
    open: Mutex<OpenStreams>,
}

#[derive(Default)]
struct OpenStreams {
    total: usize,
    per_peer: HashMap<PeerId, u32>,
}

/// A place held by one stream.
pub struct Slot {
    slots: Arc<Slots>,
    peer: PeerId,
}

impl Slot {
    pub fn peer(&self) -> PeerId {
        self.peer
    }
}

impl Slots {
    pub fn new(max_total: usize, max_per_peer: u32) -> Arc<Self> {
        Arc::new(Slots {
            max_total,
            max_per_peer,
            open: Mutex::new(OpenStreams::default()),
        })
    }

    /// A place for one more stream of `peer`, unless a cap is reached.
    pub fn take(self: &Arc<Self>, peer: PeerId) -> Option<Slot> {
        let mut open = self.open.lock().ok()?;
        let held = open.per_peer.get(&peer).copied().unwrap_or(0);
        if held >= self.max_per_peer || open.total >= self.max_total {
            return None;
        }
        open.per_peer.insert(peer, held + 1);
        open.total += 1;
        Some(Slot {
            slots: Arc::clone(self),
            peer,
        })
    }
}

impl Slot {
    /// Gives the place back; returns how many places its peer still holds.
    pub fn release(self) -> u32 {
        let slots = Arc::clone(&self.slots);
        let peer = self.peer;
        drop(self);
        slots
            .open
            .lock()
            .ok()
            .and_then(|open| open.per_peer.get(&peer).copied())
            .unwrap_or(0)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Ok(mut open) = self.slots.open.lock() {
            open.total = open.total.saturating_sub(1);
            if let Some(count) = open.per_peer.get_mut(&self.peer) {
                *count -= 1;
                if *count == 0 {
                    open.per_peer.remove(&self.peer);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_per_peer_and_in_total_and_frees_on_drop() {
        let slots = Slots::new(3, 2);
        let (a, b) = (PeerId::random(), PeerId::random());
        let a1 = slots.take(a);
        let a2 = slots.take(a);
        assert!(a1.is_some() && a2.is_some());
        assert!(slots.take(a).is_none(), "per-peer cap");
        let b1 = slots.take(b);
        assert!(b1.is_some());
        assert!(slots.take(b).is_none(), "total cap");
        drop(a1);
        let b2 = slots.take(b);
        assert!(b2.is_some());
        assert_eq!(a2.map(Slot::release), Some(0), "a gave its last place back");
        assert_eq!(b1.map(Slot::release), Some(1), "b holds one more");
    }
}
