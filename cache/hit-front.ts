/**
 * The hit front: the cache's listening socket, in front of node's HTTP
 * server, answering plain hits itself.
 *
 * Why: on a 1 KB page a hit through node's HTTP server spends more CPU in
 * that server (IncomingMessage and ServerResponse objects, header validation,
 * the per-response bookkeeping) than in the cache; measured on 2 cores, a
 * fixed 1 KB answer through node:http ran at 1.0× Varnish, the same answer
 * written from a plain socket at 1.6× (README, "The hit front").
 *
 * How, without re-opening the framing surface (issue 10, findings 2 and 7):
 * a connection starts here. A read that holds exactly one complete request
 * head in the narrowest form — `GET`/`HEAD`, origin-form target, `HTTP/1.1`,
 * strict field syntax, no body fields, no duplicate fields, no Connection
 * option but keep-alive, within the cache's head limits — and that the
 * state machine's lookup finds a fresh stored answer for (`plainHit`), is
 * answered here from bytes prepared once per object and second. A request
 * in that form that is not a plain hit (a miss, a reload, a purge) is
 * answered by node's HTTP server over a stream of its own (NodeSide), and the
 * connection stays here. Anything outside the form — a partial head,
 * pipelined requests, a body, an HTTP/1.0 client, a byte this parser does not
 * accept — hands the connection, with the bytes read, to node's HTTP server
 * for good, which parses them from the start with its strict parser as if the
 * front were not there. The front never answers what it did not fully
 * understand, and never refuses anything: every 4xx comes from the one place
 * that makes them.
 */
import net from 'node:net'
import { Duplex } from 'node:stream'
import http, { type IncomingHttpHeaders } from 'node:http'
import type { RequestView } from './policy.js'
import { isToken, parseStrictHead } from './head-parser.js'
import type { HeadWriter } from './deliver.js'
import { ageOf, cacheStatusOf, type PreparedHead } from './headers.js'

/** What the front hands to the cache for a request it parsed: the fields node would show (lower-case names). */
export interface FrontRequest extends RequestView {
  method: 'GET' | 'HEAD'
  url: string
  headers: IncomingHttpHeaders
}


export interface HitFrontOptions {
  /** Where a connection goes once a request is not answered here. */
  http: http.Server
  /** Answers the request through `res` when it is a plain hit; false passes it to node's server (NodeSide). */
  serve (req: FrontRequest, res: HeadWriter): boolean
  /** The parser limits node's server applies (request-head.ts); a head beyond them is node's to refuse. */
  maxHeadBytes: number
  maxFields: number
  maxUrlBytes: number
  keepAliveTimeoutMs: number
  headersTimeoutMs: number
  /** A client that accepts no bytes for this long is dropped (node's `server.timeout`). */
  idleTimeoutMs: number
}

export interface HitFront {
  server: net.Server
  /** Stops answering here: connections still in the front are closed once their answers are written. */
  closeConnections (): void
  /** Closes every connection still in the front, written or not (the end of a shutdown's grace). */
  destroyConnections (): void
  /**
   * Called by node's server's request handler: when `socket` is the stream
   * of a request the front passed on, the connection comes back to the front
   * once `res` is written whole (and is destroyed if it closes cut short).
   */
  watch (socket: unknown, res: http.ServerResponse): void
}

/**
 * node's server's side of one request the front passes on without handing
 * the connection over: a stream that takes the request's bytes from the front
 * and writes node's answer to the real connection, with the real peer's
 * addresses (X-Forwarded-For, trusted proxies). The front keeps the
 * connection's timers. node ending the stream (an answer with Connection:
 * close, a refused request) ends the connection; destroying it before the
 * answer was complete destroys the connection, so a cut answer is never
 * followed by another.
 */
class NodeSide extends Duplex {
  #settled = false
  constructor (private readonly real: net.Socket, private readonly onReleased: () => void) { super({ allowHalfOpen: true }) }
  get remoteAddress (): string | undefined { return this.real.remoteAddress }
  get remotePort (): number | undefined { return this.real.remotePort }
  get remoteFamily (): string | undefined { return this.real.remoteFamily }
  get localAddress (): string | undefined { return this.real.localAddress }
  get localPort (): number | undefined { return this.real.localPort }
  setTimeout (): this { return this }
  setNoDelay (): this { return this }
  setKeepAlive (): this { return this }
  override _read (): void {}
  override _write (chunk: Buffer, _encoding: BufferEncoding, done: (err?: Error | null) => void): void { this.real.write(chunk, done) }
  override _final (done: (err?: Error | null) => void): void {
    this.#settled = true
    this.real.end()
    done()
  }

  override _destroy (err: Error | null, done: (err?: Error | null) => void): void {
    if (!this.#settled) { this.#settled = true; this.real.destroy() }
    done(err)
  }

  release (complete: boolean): void {
    if (this.#settled || this.destroyed || this.writableEnded) return
    if (!complete) { this.destroy(); return }
    this.#settled = true
    this.destroy()
    this.onReleased()
  }
}

const CRLF2 = Buffer.from('\r\n\r\n', 'latin1')

/**
 * Fields that change framing or the connection: a request carrying one is
 * node's. (Set-Cookie: node keeps it as a list; in a request it means nothing to a cache.)
 */
const NOT_HERE = new Set(['content-length', 'transfer-encoding', 'upgrade', 'expect', 'http2-settings', 'set-cookie'])

const FRONT_METHODS = ['GET', 'HEAD'] as const
const FRONT_VERSIONS = ['HTTP/1.1']

/**
 * Parses `head` (latin1, ending with CRLF CRLF and holding no other blank
 * line) when it is in the narrow form the front answers; null otherwise.
 * The syntax is the cache's one strict parser's (head-parser.ts); the front
 * adds what it leaves to node's server.
 */
export function parseFrontHead (head: string, maxFields: number, maxUrlBytes: number): FrontRequest | null {
  const parsed = parseStrictHead(head, { methods: FRONT_METHODS, versions: FRONT_VERSIONS, maxFields, maxUrlBytes, maxHeadBytes: head.length, refused: NOT_HERE })
  if (typeof parsed === 'string') return null
  const headers = parsed.headers
  if (headers.connection !== undefined && headers.connection.toLowerCase() !== 'keep-alive') return null
  // RFC 9112 §3.2: an HTTP/1.1 request without Host is node's to refuse.
  if (headers.host === undefined) return null
  return { method: parsed.method, url: parsed.url, headers }
}

/** node's Date value, recomputed once a second. */
let dateSecond = -1
let dateValue = ''
function utcDate (now: number): string {
  const second = Math.floor(now / 1000)
  if (second !== dateSecond) { dateSecond = second; dateValue = new Date(second * 1000).toUTCString() }
  return dateValue
}

/** A serialized head, reused while the PreparedHead's per-second values are the same strings (headers.ts). */
interface Prepared { status: number, age: string, cacheStatus: string, date: string | undefined, bytes: Buffer }

/**
 * Collects one answer's head and body as bytes. A head is serialized once
 * per prepared array and second (the hit path's arrays are updated in place,
 * headers.ts); a value node would refuse (CR, LF, NUL) leaves `bytes` unset
 * so the request goes to node's server, which answers it the usual way.
 */
class FrontResponse implements HeadWriter {
  status = 0
  head: PreparedHead = []
  bytes: Buffer | undefined = undefined
  body: Buffer | undefined = undefined
  constructor (private readonly prepared: WeakMap<PreparedHead, Prepared>, private readonly keepAlive: string, private readonly headOnly: boolean) {}

  writeHead (status: number, head: PreparedHead): void { this.status = status; this.head = head }

  end (body?: Buffer): void {
    const head = this.head
    const now = Date.now()
    const age = ageOf(head)
    const cacheStatus = cacheStatusOf(head)
    let p = this.prepared.get(head)
    if (p === undefined || p.status !== this.status || p.age !== age || p.cacheStatus !== cacheStatus || (p.date !== undefined && p.date !== utcDate(now))) {
      const bytes = serialize(this.status, head, this.keepAlive, now, body === undefined && !this.headOnly)
      if (bytes === undefined) return
      p = { status: this.status, age, cacheStatus, date: bytes.date, bytes: bytes.head }
      this.prepared.set(head, p)
    }
    this.bytes = p.bytes
    this.body = body
  }
}

function serialize (status: number, head: string[], keepAlive: string, now: number, noBody: boolean): { head: Buffer, date: string | undefined } | undefined {
  let s = `HTTP/1.1 ${status} ${http.STATUS_CODES[status] ?? 'unknown'}\r\n`
  let hasDate = false
  let hasLength = false
  for (let i = 0; i < head.length; i += 2) {
    const name = head[i]
    const value = head[i + 1]
    if (!isToken(name, 0, name.length) || /[\r\n\0]/.test(value)) return undefined
    if (name === 'date') hasDate = true
    else if (name === 'content-length') hasLength = true
    s += name + ': ' + value + '\r\n'
  }
  // RFC 9110 §6.6.1: node's server adds Date when the answer has none; so does the front.
  const date = hasDate ? undefined : utcDate(now)
  if (date !== undefined) s += 'date: ' + date + '\r\n'
  // Every delivery of a stored object carries Content-Length, or is a 304 (RFC 9110 §8.6).
  if (!hasLength && !noBody && status !== 304 && status !== 204) return undefined
  s += keepAlive + '\r\n'
  return { head: Buffer.from(s, 'latin1'), date }
}

/** Bodies up to this size go out in the same buffer as their head (one copy, one write); larger ones as a second buffer. */
const JOIN_BELOW = 16 * 1024

export function createHitFront (o: HitFrontOptions): HitFront {
  const prepared = new WeakMap<PreparedHead, Prepared>()
  const keepAlive = `connection: keep-alive\r\nkeep-alive: timeout=${Math.floor(o.keepAliveTimeoutMs / 1000)}\r\n`
  const here = new Set<net.Socket>()
  let closing = false

  // Half-open like node's server: a client may end its side after a request and still read the answer.
  const server = net.createServer({ noDelay: true, allowHalfOpen: true }, (socket) => {
    here.add(socket)
    // A request node's server is answering for the front (see throughNode).
    let side: NodeSide | undefined
    socket.on('close', () => {
      here.delete(socket)
      side?.destroy()
    })
    // Until a first request arrives: node's head timeout; between requests:
    // its keep-alive timeout. Set only when it changes (each call makes a new
    // timer); reads and writes restart it by themselves.
    let timeout = o.headersTimeoutMs
    socket.setTimeout(timeout)
    const expireAfter = (ms: number): void => { if (ms !== timeout) { timeout = ms; socket.setTimeout(ms) } }
    const onTimeout = (): void => { socket.destroy() }
    const onError = (): void => { /* a reset by the client; 'close' follows */ }
    // The client is done sending: nothing more to answer here once node's answer (if any) is written.
    const onEnd = (): void => {
      if (side !== undefined) side.push(null)
      else socket.end()
    }
    socket.on('timeout', onTimeout)
    socket.on('error', onError)
    socket.on('end', onEnd)
    /**
     * A whole request in the narrow form that is not a plain hit (a miss, a
     * reload, a purge, …): node's server answers it over a stream of its own
     * while the connection waits, then the connection is the front's again —
     * so a load balancer's reused connections stay here through misses.
     */
    const throughNode = (chunk: Buffer): void => {
      socket.pause()
      expireAfter(o.idleTimeoutMs)
      const s = new NodeSide(socket, () => {
        side = undefined
        // Closing down, or the client ended its side while node answered: the connection ends here.
        if (closing || socket.readableEnded) { socket.end(); return }
        expireAfter(o.keepAliveTimeoutMs)
        socket.resume()
      })
      side = s
      o.http.emit('connection', s)
      s.push(chunk)
    }
    const onData = (chunk: Buffer): void => {
      if (!closing && answer(chunk)) return
      // Node's from here on: the bytes go back in front of whatever follows.
      here.delete(socket)
      socket.removeListener('data', onData)
      socket.removeListener('timeout', onTimeout)
      socket.removeListener('error', onError)
      socket.removeListener('end', onEnd)
      socket.setTimeout(0)
      socket.unshift(chunk)
      o.http.emit('connection', socket)
    }
    const answer = (chunk: Buffer): boolean => {
      // One whole head and nothing after it: CRLF CRLF only at the very end.
      const n = chunk.length
      if (n < 18 || n > o.maxHeadBytes || chunk.indexOf(CRLF2) !== n - 4) return false
      const req = parseFrontHead(chunk.toString('latin1'), o.maxFields, o.maxUrlBytes)
      if (req === null) return false
      const res = new FrontResponse(prepared, keepAlive, req.method === 'HEAD')
      if (!o.serve(req, res) || res.bytes === undefined) {
        throughNode(chunk)
        return true
      }
      const body = req.method === 'HEAD' ? undefined : res.body
      if (body === undefined || body.length === 0) socket.write(res.bytes)
      else if (body.length < JOIN_BELOW) socket.write(Buffer.concat([res.bytes, body], res.bytes.length + body.length))
      else {
        socket.cork()
        socket.write(res.bytes)
        socket.write(body)
        socket.uncork()
      }
      // Whether the kernel took the whole answer. (write()'s return value
      // compares with the stream's 16 KB mark before writing: false for any
      // larger answer even when nothing is left queued.)
      const flushed = socket.writableLength === 0
      if (flushed || !socket.writableNeedDrain) expireAfter(flushed ? o.keepAliveTimeoutMs : o.idleTimeoutMs)
      else {
        // A client that does not read: past the stream's mark, read nothing
        // more from it until it has (node's server does the same); 'drain'
        // is due because the mark was passed.
        socket.pause()
        expireAfter(o.idleTimeoutMs)
        socket.once('drain', () => {
          expireAfter(o.keepAliveTimeoutMs)
          if (closing) socket.end()
          else socket.resume()
        })
      }
      return true
    }
    socket.on('data', onData)
  })

  return {
    server,
    closeConnections () {
      closing = true
      // Answers here are written whole and at once: a socket still here is
      // between requests (or draining one answer, which end() lets finish).
      for (const socket of here) if (!socket.isPaused()) socket.end()
    },
    destroyConnections () {
      for (const socket of here) socket.destroy()
    },
    watch (socket, res) {
      // Only passed-on requests: node's own connections pay for no listener.
      if (socket instanceof NodeSide) res.once('close', () => { socket.release(res.writableFinished) })
    }
  }
}
