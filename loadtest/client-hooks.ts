// autocannon glue, per connection (`setupClient`): where each request's
// bytes come from and where each answer is counted.
//
// autocannon's own per-request hooks (`requests[].setupRequest`,
// `onResponse`) rebuild the request bytes and turn the response headers into
// an object on every request; over a whole run that was most of what the
// load tester spent on itself. Instead:
// - the connection asks the generator for the next request's bytes when it
//   writes (`getRequestBuffer`): a page read is a cached Buffer;
// - the parser's header list is scanned for X-Cache / Cache-Status in place
//   (`headers` event), and the `response` event carries status, bytes and
//   latency: every response is counted, none sampled;
// - a timeout or a connection error is counted against the endpoint of the
//   request it hit, so per-endpoint error thresholds see timeouts.
//
// getRequestBuffer, `conn` and the `headers` event are autocannon 8's client
// internals, not its documented API: `installClientHooks` checks they are
// there and fails loudly otherwise (and the tests count what reaches the
// server, request by request).
import { cacheFromRawHeaders, NO_CACHE_INFO, type CacheInfo } from './cache-headers.js'
import type { RequestMeta } from './group.js'
import type { WireRequest } from './requests.js'
import type { Recorder } from './recorder.js'

export interface RequestSource { nextWire: () => WireRequest }

/** The slice of autocannon's Client this file relies on. */
interface AutocannonClient {
  conn: unknown
  getRequestBuffer: () => Buffer
  on: (event: string, listener: (...args: any[]) => void) => unknown
  pipelinedRequests?: { addBody?: (data: Buffer) => void }
  requestIterator?: { resetContext?: () => void }
}

const nothing = (): void => {}

interface Sent { meta: RequestMeta, conn: unknown }

export function installClientHooks (client: AutocannonClient, source: RequestSource, recorder: Recorder): void {
  if (typeof client.getRequestBuffer !== 'function' || typeof client.on !== 'function') {
    throw new Error('autocannon client internals changed (getRequestBuffer): loadtest/client-hooks.ts needs updating')
  }
  // Work autocannon does per response for features this tool does not use:
  // decoding each body into a string (for verifyBody / expectBody /
  // onResponse) and deep-cloning a per-request context (for setupRequest).
  // A 50 KB page would be decoded 50 KB at a time, on every response.
  if (client.pipelinedRequests?.addBody) client.pipelinedRequests.addBody = nothing
  if (client.requestIterator?.resetContext) client.requestIterator.resetContext = nothing
  // pipelining is 1: at most one request in flight per connection
  let cur: Sent | null = null
  let prev: Sent | null = null
  let cache: CacheInfo = NO_CACHE_INFO
  client.getRequestBuffer = function (this: AutocannonClient): Buffer {
    const w = source.nextWire()
    prev = cur
    cur = { meta: w.meta, conn: this.conn }
    cache = NO_CACHE_INFO
    return w.buffer
  }
  client.on('headers', (info: { headers?: string[] }) => {
    cache = info.headers ? cacheFromRawHeaders(info.headers) : NO_CACHE_INFO
  })
  client.on('response', (status: number, bytes: number, latencyMs: number) => {
    // emitted before the next request is written: `cur` is the one answered
    if (cur) recorder.response(cur.meta, status, bytes, latencyMs, cache.state, cache.collapsed)
  })
  client.on('timeout', () => {
    // autocannon reconnects and writes the next request before it emits
    // 'timeout': if a request went out on the new connection, the one that
    // timed out is the one before it
    const failed = cur !== null && cur.conn === client.conn && prev !== null ? prev : cur
    if (failed) recorder.transportError(failed.meta, true)
  })
  client.on('connError', () => {
    // emitted before autocannon reconnects: `cur` went out on the failed connection
    if (cur) recorder.transportError(cur.meta, false)
  })
}
