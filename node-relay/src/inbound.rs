//! Inbound streams for our protocols, handed to each protocol's accept loop through a queue.
//!
//! The relay only ever answers streams that remote peers open (see `client_core::protocol`),
//! so this behaviour does one thing: negotiate an inbound stream for a registered protocol and
//! pass it, with the remote's peer id, to that protocol's server. Each protocol has a queue of
//! [`QUEUE_PER_PROTOCOL`] streams, so a burst of streams from many peers at once waits for the
//! accept loop instead of being dropped. (A hand-off with room for a single stream loses the
//! second of two streams that arrive on different connections before the accept loop runs —
//! under load that happened within seconds, leaving the client waiting on a stream nobody
//! serves.) A stream that finds its queue full is reset at once and counted in the log, so
//! the client sees an error straight away.

use libp2p::core::upgrade::{DeniedUpgrade, InboundUpgrade, UpgradeInfo};
use libp2p::core::{Endpoint, transport::PortUse};
use libp2p::swarm::handler::{ConnectionEvent, FullyNegotiatedInbound};
use libp2p::swarm::{
    ConnectionDenied, ConnectionHandler, ConnectionHandlerEvent, ConnectionId, FromSwarm,
    NetworkBehaviour, SubstreamProtocol, THandler, THandlerInEvent, THandlerOutEvent, ToSwarm,
};
use libp2p::{Multiaddr, PeerId, Stream, StreamProtocol};
use std::collections::HashMap;
use std::convert::Infallible;
use std::future::{Ready, ready};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use tokio::sync::mpsc;

/// Streams of one protocol waiting for its accept loop.
pub const QUEUE_PER_PROTOCOL: usize = 256;

type Queues = Arc<Mutex<HashMap<StreamProtocol, mpsc::Sender<(PeerId, Stream)>>>>;

fn lock(
    queues: &Queues,
) -> std::sync::MutexGuard<'_, HashMap<StreamProtocol, mpsc::Sender<(PeerId, Stream)>>> {
    // The map is only ever inserted into or read: a panic elsewhere cannot leave it half-done.
    queues.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The network behaviour: offers every registered protocol on every connection.
#[derive(Default)]
pub struct Behaviour {
    queues: Queues,
}

impl Behaviour {
    pub fn control(&self) -> Control {
        Control {
            queues: Arc::clone(&self.queues),
        }
    }
}

/// Registers protocols; cheap to clone.
#[derive(Clone)]
pub struct Control {
    queues: Queues,
}

#[derive(Debug, thiserror::Error)]
#[error("{0} is already being served")]
pub struct AlreadyServed(StreamProtocol);

impl Control {
    /// Starts offering `protocol`; its inbound streams arrive on the returned queue.
    pub fn accept(&mut self, protocol: StreamProtocol) -> Result<Incoming, AlreadyServed> {
        let mut queues = lock(&self.queues);
        queues.retain(|_, sender| !sender.is_closed());
        if queues.contains_key(&protocol) {
            return Err(AlreadyServed(protocol));
        }
        let (sender, receiver) = mpsc::channel(QUEUE_PER_PROTOCOL);
        queues.insert(protocol, sender);
        Ok(Incoming { receiver })
    }
}

/// Inbound streams of one protocol, in the order they were negotiated.
pub struct Incoming {
    receiver: mpsc::Receiver<(PeerId, Stream)>,
}

impl Incoming {
    /// The next stream and who opened it; `None` once the network has stopped.
    pub async fn next(&mut self) -> Option<(PeerId, Stream)> {
        self.receiver.recv().await
    }
}

impl NetworkBehaviour for Behaviour {
    type ConnectionHandler = Handler;
    type ToSwarm = Infallible;

    fn handle_established_inbound_connection(
        &mut self,
        _: ConnectionId,
        peer: PeerId,
        _: &Multiaddr,
        _: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        Ok(Handler {
            peer,
            queues: Arc::clone(&self.queues),
        })
    }

    fn handle_established_outbound_connection(
        &mut self,
        _: ConnectionId,
        peer: PeerId,
        _: &Multiaddr,
        _: Endpoint,
        _: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        Ok(Handler {
            peer,
            queues: Arc::clone(&self.queues),
        })
    }

    fn on_swarm_event(&mut self, _: FromSwarm) {}

    fn on_connection_handler_event(
        &mut self,
        _: PeerId,
        _: ConnectionId,
        e: THandlerOutEvent<Self>,
    ) {
        match e {}
    }

    fn poll(&mut self, _: &mut Context<'_>) -> Poll<ToSwarm<Self::ToSwarm, THandlerInEvent<Self>>> {
        Poll::Pending
    }
}

/// One connection's side: offers the registered protocols, queues what gets negotiated.
pub struct Handler {
    peer: PeerId,
    queues: Queues,
}

impl ConnectionHandler for Handler {
    type FromBehaviour = Infallible;
    type ToBehaviour = Infallible;
    type InboundProtocol = Offer;
    type OutboundProtocol = DeniedUpgrade;
    type InboundOpenInfo = ();
    type OutboundOpenInfo = ();

    fn listen_protocol(&self) -> SubstreamProtocol<Offer> {
        let protocols = lock(&self.queues)
            .iter()
            .filter(|(_, sender)| !sender.is_closed())
            .map(|(protocol, _)| protocol.clone())
            .collect();
        SubstreamProtocol::new(Offer(protocols), ())
    }

    fn poll(
        &mut self,
        _: &mut Context<'_>,
    ) -> Poll<ConnectionHandlerEvent<DeniedUpgrade, (), Infallible>> {
        Poll::Pending
    }

    fn on_behaviour_event(&mut self, e: Infallible) {
        match e {}
    }

    fn on_connection_event(&mut self, event: ConnectionEvent<Offer, DeniedUpgrade>) {
        let ConnectionEvent::FullyNegotiatedInbound(FullyNegotiatedInbound {
            protocol: (stream, protocol),
            ..
        }) = event
        else {
            return;
        };
        let sender = lock(&self.queues).get(&protocol).cloned();
        let Some(sender) = sender else {
            return;
        };
        if let Err(mpsc::error::TrySendError::Full(_)) = sender.try_send((self.peer, stream)) {
            tracing::warn!(peer = %self.peer, %protocol, "stream reset: {QUEUE_PER_PROTOCOL} streams already wait for this protocol");
        }
    }
}

/// The protocols a connection accepts; the negotiated stream comes out as it is.
pub struct Offer(Vec<StreamProtocol>);

impl UpgradeInfo for Offer {
    type Info = StreamProtocol;
    type InfoIter = std::vec::IntoIter<StreamProtocol>;

    fn protocol_info(&self) -> Self::InfoIter {
        self.0.clone().into_iter()
    }
}

impl InboundUpgrade<Stream> for Offer {
    type Output = (Stream, StreamProtocol);
    type Error = Infallible;
    type Future = Ready<Result<Self::Output, Infallible>>;

    fn upgrade_inbound(self, stream: Stream, protocol: StreamProtocol) -> Self::Future {
        ready(Ok((stream, protocol)))
    }
}
