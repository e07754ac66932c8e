// js-libp2p in Node.js over TCP (Noise, Yamux) against a relay's libp2p TCP address.
// Usage: node node-tcp.mjs MULTIADDR [CONNECTIONS] [PROBES]; prints one JSON report.
import { polyfill, session } from './status.mjs'

polyfill()
const { createLibp2p } = await import('libp2p')
const { tcp } = await import('@libp2p/tcp')
const { noise } = await import('@chainsafe/libp2p-noise')
const { yamux } = await import('@chainsafe/libp2p-yamux')
const { multiaddr } = await import('@multiformats/multiaddr')

const [addr, connections = '3', probes = '5'] = process.argv.slice(2)
if (addr == null) {
  console.error('usage: node node-tcp.mjs MULTIADDR [CONNECTIONS] [PROBES]')
  process.exit(2)
}
const makeNode = () => createLibp2p({
  transports: [tcp()],
  connectionEncrypters: [noise()],
  streamMuxers: [yamux()]
})
try {
  const report = await session(makeNode, multiaddr(addr), {
    connections: Number(connections),
    probes: Number(probes),
    // Over TCP no stream is swallowed, so a first stream is given as long as any other: a
    // reopened one here is a failure, not a slow moment of a loaded machine.
    firstTimeoutMs: 10_000
  })
  console.log(JSON.stringify({ ok: true, ...report }))
} catch (e) {
  console.log(JSON.stringify({ ok: false, error: e.stack ?? String(e) }))
}
