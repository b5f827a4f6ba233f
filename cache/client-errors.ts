/**
 * Errors node's parser reports on a client connection ('clientError'): which
 * message they belong to, and how that message is answered.
 *
 * The parser reads a connection's messages in order. An error is either
 * inside the body of the last request it handed to us (bad chunking,
 * oversized trailers, a body that never finishes), or in a message of its
 * own that follows every request already parsed (junk after a complete
 * request, a head too large, an unknown method). The first is that
 * request's answer: nothing of it was forwarded (pass reads bodies first).
 * The second is not: the requests before it are complete and are answered
 * normally and in order (RFC 9112 §9.3.2), then the bad message gets its 400
 * (RFC 9112 §2.2, or 431/408) and the connection closes, because nothing
 * after it can be framed. Answering an already executed request with "400
 * malformed" would tell the client it was not processed when it was.
 */
import type { ServerResponse } from 'node:http'
import type { Socket } from 'node:net'
import type { Duplex } from 'node:stream'

/** Marks a connection whose framing we rejected: requests already parsed behind it are dropped, never forwarded. */
export const REJECTED = Symbol('flashcrowd.rejected')
/** The response of the last request parsed on a connection. */
const LAST = Symbol('flashcrowd.lastResponse')
/** Marks a response that closes its connection (a refusal). */
const CLOSES = Symbol('flashcrowd.closes')

type Marked = Record<symbol, unknown>

export function markRejected (socket: Socket | Duplex): void { (socket as unknown as Marked)[REJECTED] = true }
/** Whether requests parsed after this point on `socket` are dropped (a refusal was decided). */

/** The answer `res` refuses its request and closes the connection: nothing after it on the connection is processed. */
export function refuse (socket: Socket | Duplex, res: ServerResponse): void {
  markRejected(socket)
  ;(res as unknown as Marked)[CLOSES] = true
}

/** Whether `res` ends its connection: a refusal, or a client that asked for it (Connection: close, HTTP/1.0). */
function closesConnection (res: ServerResponse): boolean {
  return (res as unknown as Marked)[CLOSES] === true || !res.shouldKeepAlive
}
export function isRejected (socket: Socket | Duplex): boolean { return (socket as unknown as Marked)[REJECTED] === true }

/**
 * Runs `start` for a request once every answer before it on its connection
 * is written, and never when one of them closed the connection. node's
 * server hands over pipelined requests as soon as it parses them; answering
 * them in order (RFC 9112 §9.3.2) is not enough: a request behind an answer
 * that closes the connection (a refusal, node's 400 for a missing Host, a
 * 417, a client's own Connection: close) must not be processed at all — not
 * even fetched (RFC 9112 §9.6, issue 23 finding 3). Requests on one
 * connection are therefore processed one at a time, as Varnish does.
 */
export function inTurn (socket: Socket | Duplex, res: ServerResponse, start: () => void): void {
  const marked = socket as unknown as Marked
  const previous = marked[LAST] as ServerResponse | undefined
  marked[LAST] = res
  if (previous === undefined) { start(); return }
  const next = (): void => {
    // The connection ends with that answer: this request is dropped unseen (node closes the socket).
    if (closesConnection(previous)) return
    start()
  }
  if (previous.writableFinished) { next(); return }
  previous.once('finish', next)
}

/** The answer to the last request handed over on `socket`, if any. */
function lastResponse (socket: Socket | Duplex): ServerResponse | undefined {
  return (socket as unknown as Marked)[LAST] as ServerResponse | undefined
}

/**
 * node's server answers an Expect it does not know (anything but
 * 100-continue) with a 417 and keeps reading the connection, whose body it
 * has not framed: the request is refused here instead, and the connection
 * closes (RFC 9110 §10.1.1).
 */
export function refuseExpectation (socket: Socket | Duplex, res: ServerResponse): void {
  refuse(socket, res)
  const text = 'expectation not supported\n'
  res.writeHead(417, { 'content-type': 'text/plain; charset=utf-8', 'content-length': String(Buffer.byteLength(text)), 'cache-control': 'no-store', connection: 'close' })
  res.end(text)
}

const REASONS: Record<number, string> = { 200: 'OK', 500: 'Internal Server Error', 400: 'Bad Request', 401: 'Unauthorized', 403: 'Forbidden', 408: 'Request Timeout', 413: 'Content Too Large', 414: 'URI Too Long', 431: 'Request Header Fields Too Large', 503: 'Service Unavailable' }

/** An answer written straight to the socket (no request object exists), then the connection closes. */
export function rawAnswer (socket: Duplex, status: number, body: string, extra = '', type = 'text/plain; charset=utf-8'): void {
  if (!socket.writable) { socket.destroy(); return }
  socket.end(`HTTP/1.1 ${status} ${REASONS[status] ?? 'Error'}\r\nContent-Type: ${type}\r\nContent-Length: ${Buffer.byteLength(body)}\r\nCache-Control: no-store\r\nConnection: close\r\n${extra}\r\n${body}`)
}

export type ParserError = Error & { code?: string, rawPacket?: Buffer }

export interface ClientErrorOptions {
  /** A BAN request (node's parser does not know the method; its raw bytes come with the error). */
  ban (raw: Buffer, socket: Duplex): void
}

function statusOf (err: ParserError): { status: number, text: string } {
  if (err.code === 'HPE_HEADER_OVERFLOW') return { status: 431, text: 'request header fields too large\n' }
  if (err.code === 'ERR_HTTP_REQUEST_TIMEOUT') return { status: 408, text: 'request timeout\n' }
  return { status: 400, text: 'malformed request\n' }
}

export function onClientError (err: ParserError, socket: Duplex, opts: ClientErrorOptions): void {
  if (err.code === 'ECONNRESET') { socket.destroy(); return }
  // An answer already closes this connection (a refusal): nothing after it
  // is answered either (RFC 9112 §9.6); that answer ends the connection.
  if (isRejected(socket)) return
  const { status, text } = statusOf(err)
  const last = lastResponse(socket)
  if (last !== undefined && !last.req.complete) {
    // Inside the last request's body: it is that request's answer.
    refuse(socket, last)
    if (last.headersSent) { socket.destroy(); return }
    last.writeHead(status, { 'content-type': 'text/plain; charset=utf-8', 'content-length': String(Buffer.byteLength(text)), 'cache-control': 'no-store', connection: 'close' })
    last.end(text)
    return
  }
  // A message of its own: answered after every request before it.
  markRejected(socket)
  const raw = err.rawPacket
  const ban = err.code === 'HPE_INVALID_METHOD' && raw?.subarray(0, 4).toString('latin1') === 'BAN ' ? raw : undefined
  const answer = (): void => {
    if (ban !== undefined) opts.ban(ban, socket)
    else rawAnswer(socket, status, text)
  }
  if (last === undefined || last.writableFinished) { answer(); return }
  last.once('finish', answer)
  // The client went away before its earlier answers were written: nothing left to say.
  last.once('close', () => { if (!last.writableFinished) socket.destroy() })
}
