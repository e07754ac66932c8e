// js-libp2p in the browser over webrtc-direct against a relay's /webrtc-direct/certhash address.
// Bundled by `cargo xtask` into the interop page; the test drives it through `window.interop`.
import { createLibp2p } from 'libp2p'
import { webRTCDirect } from '@libp2p/webrtc'
import { noise } from '@chainsafe/libp2p-noise'
import { multiaddr } from '@multiformats/multiaddr'
import { holdSilent, polyfill, session } from './status.mjs'

polyfill()

async function node () {
  return createLibp2p({
    transports: [webRTCDirect()],
    connectionEncrypters: [noise()],
    // The relay under test is on loopback, which the browser's default gater refuses.
    connectionGater: { denyDialMultiaddr: () => false }
  })
}

// Each call stores its outcome in `window.interop.result` (`{ done, ok, ... }`) for polling.
window.interop = {
  result: { done: false },
  run (addr, connections, probes) {
    this.result = { done: false }
    session(node, multiaddr(addr), { connections, probes })
      .then((report) => { this.result = { done: true, ok: true, ...report } })
      .catch((e) => { this.result = { done: true, ok: false, error: e.stack ?? String(e) } })
  },
  // Connects, probes once and then goes quiet with the stream open, as a tab that froze.
  hold (addr) {
    this.result = { done: false }
    node()
      .then(async (libp2p) => {
        await holdSilent(libp2p, multiaddr(addr))
        this.result = { done: true, ok: true, peerId: libp2p.peerId.toString() }
      })
      .catch((e) => { this.result = { done: true, ok: false, error: e.stack ?? String(e) } })
  }
}
