// The relay's status protocol as an independent client writes it: nothing here comes from the
// project's Rust code. Shared by the Node.js (TCP) and the Chromium (webrtc-direct) runs.
//
// Wire format (see the README's protocol notes): a frame is a 4-byte big-endian length and a
// Borsh body. A probe is `[0] u64-LE seq`; a pong is `[0] u64 seq, RelayStatus { network_id:
// string, version: string, uptime_ms: u64, connected_peers: u32 }`; an error is `[1] { code: u8,
// message: string }`, where a Borsh string is a u32-LE length and UTF-8 bytes.

export const STATUS_PROTOCOL = '/aqueduct/status/1'

// How long the first stream of a connection may take to be negotiated before it is given up and
// opened again. Over webrtc-direct the relay's WebRTC stack can accept a data channel opened in
// the instant after the handshake and never hand it on (README, protocol notes); a healthy
// negotiation on a local or regional link takes milliseconds.
export const FIRST_STREAM_TIMEOUT_MS = 1500
export const FIRST_STREAM_ATTEMPTS = 4

export function encodeProbe (seq) {
  const frame = new Uint8Array(4 + 9)
  const view = new DataView(frame.buffer)
  view.setUint32(0, 9, false)
  frame[4] = 0
  view.setBigUint64(5, BigInt(seq), true)
  return frame
}

class BorshReader {
  constructor (bytes) {
    this.bytes = bytes
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
    this.at = 0
  }

  need (n) {
    if (this.at + n > this.bytes.length) throw new Error(`truncated response at byte ${this.at}`)
  }

  u8 () { this.need(1); return this.bytes[this.at++] }
  u32 () { this.need(4); const v = this.view.getUint32(this.at, true); this.at += 4; return v }
  u64 () { this.need(8); const v = this.view.getBigUint64(this.at, true); this.at += 8; return v }
  string () {
    const len = this.u32()
    this.need(len)
    const s = new TextDecoder('utf-8', { fatal: true }).decode(this.bytes.subarray(this.at, this.at + len))
    this.at += len
    return s
  }
}

export function decodeResponse (body) {
  const r = new BorshReader(body)
  const tag = r.u8()
  let out
  if (tag === 0) {
    out = {
      kind: 'pong',
      seq: r.u64(),
      networkId: r.string(),
      version: r.string(),
      uptimeMs: Number(r.u64()),
      connectedPeers: r.u32()
    }
  } else if (tag === 1) {
    out = { kind: 'error', code: r.u8(), message: r.string() }
  } else {
    throw new Error(`unknown response tag ${tag}`)
  }
  if (r.at !== body.length) throw new Error(`${body.length - r.at} trailing bytes in a response`)
  return out
}

// Reads length-prefixed frames from a js-libp2p stream's 'message' events.
class FrameReader {
  constructor (stream) {
    this.buf = new Uint8Array(0)
    this.ended = null
    this.wake = () => {}
    stream.addEventListener('message', (e) => {
      const chunk = e.data.subarray()
      const next = new Uint8Array(this.buf.length + chunk.length)
      next.set(this.buf)
      next.set(chunk, this.buf.length)
      this.buf = next
      this.wake()
    })
    stream.addEventListener('remoteCloseWrite', () => { this.ended ??= 'the relay closed the stream'; this.wake() })
    stream.addEventListener('close', (e) => { this.ended ??= `stream closed${e.error ? ': ' + e.error.message : ''}`; this.wake() })
  }

  async next (timeoutMs) {
    const deadline = Date.now() + timeoutMs
    for (;;) {
      if (this.buf.length >= 4) {
        const len = new DataView(this.buf.buffer, this.buf.byteOffset).getUint32(0, false)
        if (len > 1024) throw new Error(`frame of ${len} bytes is over the status limit`)
        if (this.buf.length >= 4 + len) {
          const body = this.buf.slice(4, 4 + len)
          this.buf = this.buf.slice(4 + len)
          return body
        }
      }
      if (this.ended != null) throw new Error(this.ended)
      const left = deadline - Date.now()
      if (left <= 0) throw new Error(`no answer within ${timeoutMs} ms`)
      await new Promise((resolve) => {
        const timer = setTimeout(resolve, left)
        this.wake = () => { clearTimeout(timer); resolve() }
      })
    }
  }
}

// Opens a status stream, bounding the negotiation when it is the connection's first stream and
// opening it again if that one was swallowed. Returns the stream and how many attempts it took.
// `firstTimeoutMs` bounds each attempt at the first stream.
export async function openStatus (conn, { first, firstTimeoutMs = FIRST_STREAM_TIMEOUT_MS }) {
  const attempts = first ? FIRST_STREAM_ATTEMPTS : 1
  let lastError
  for (let attempt = 1; attempt <= attempts; attempt++) {
    try {
      const signal = AbortSignal.timeout(first ? firstTimeoutMs : 10_000)
      const stream = await conn.newStream(STATUS_PROTOCOL, { signal })
      return { stream, attempts: attempt }
    } catch (e) {
      lastError = e
    }
  }
  throw new Error(`the status stream was not negotiated in ${attempts} attempts: ${lastError?.message}`)
}

// Sends `count` probes one after another on a stream and checks every answer.
export async function probe (stream, reader, count, firstSeq) {
  const pongs = []
  for (let i = 0; i < count; i++) {
    const seq = firstSeq + i
    const started = performance.now()
    stream.send(encodeProbe(seq))
    const answer = decodeResponse(await reader.next(5000))
    if (answer.kind !== 'pong') throw new Error(`probe ${seq} refused: ${answer.message}`)
    if (answer.seq !== BigInt(seq)) throw new Error(`probe ${seq} answered with seq ${answer.seq}`)
    pongs.push({ ...answer, seq: Number(answer.seq), rttMs: performance.now() - started })
  }
  return pongs
}

// Closes a stream's writing half and times how long the close takes.
async function timedClose (stream) {
  const started = performance.now()
  let error = null
  try {
    await stream.close()
  } catch (e) {
    error = e.message ?? String(e)
  }
  return { closeMs: performance.now() - started, closeError: error }
}

// The interop session: `connections` fresh connections, each from a new node (its own key, as
// separate visitors: a relay admits at most 8 connections of one peer, and it cannot tell when a
// closed WebRTC connection is gone), each opening its status stream right after the handshake,
// exchanging probes, closing the stream, then opening and closing a second status stream on the
// same connection.
// `firstTimeoutMs` is how long a first stream may take before it is opened again.
export async function session (makeNode, addr, { connections = 1, probes = 5, firstTimeoutMs } = {}) {
  const report = { connections: [] }
  for (let c = 0; c < connections; c++) {
    const node = await makeNode()
    try {
      const entry = { streams: [] }
      const conn = await node.dial(addr)
      entry.remotePeer = conn.remotePeer.toString()
      for (let s = 0; s < 2; s++) {
        const { stream, attempts } = await openStatus(conn, { first: s === 0, firstTimeoutMs })
        const reader = new FrameReader(stream)
        const pongs = await probe(stream, reader, probes, 1 + s * probes)
        const closed = await timedClose(stream)
        entry.streams.push({
          attempts,
          answered: pongs.length,
          networkId: pongs[0]?.networkId,
          version: pongs[0]?.version,
          maxRttMs: Math.max(...pongs.map((p) => p.rttMs)),
          ...closed
        })
      }
      await conn.close()
      report.connections.push(entry)
    } catch (e) {
      throw new Error(`connection ${c + 1} of ${connections}: ${e.message}`)
    } finally {
      await node.stop()
    }
  }
  return report
}

// Opens a status stream, probes once, then stays silent with the stream open: the relay should
// notice within its heartbeat lapse that the peer has gone quiet and drop the connection.
export async function holdSilent (node, addr) {
  const conn = await node.dial(addr)
  const { stream } = await openStatus(conn, { first: true })
  const reader = new FrameReader(stream)
  await probe(stream, reader, 1, 1)
  return { conn, stream }
}

// Node.js 20 lacks Promise.withResolvers, which js-libp2p uses; harmless where it exists.
export function polyfill () {
  if (typeof Promise.withResolvers !== 'function') {
    Promise.withResolvers = function () {
      let resolve, reject
      const promise = new Promise((res, rej) => { resolve = res; reject = rej })
      return { promise, resolve, reject }
    }
  }
}
