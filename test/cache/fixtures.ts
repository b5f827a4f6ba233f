/**
 * Shared test fixtures for the cache: real node:http origins on port 0 that
 * count their requests, a fake clock (injected into buildApp) for TTL, grace
 * and staleness, and a small HTTP client that does not add Accept-Encoding.
 */
import http from 'node:http'
import net from 'node:net'
import type { AddressInfo } from 'node:net'
import { Agent, request } from 'undici'
import { MemoryBus, type Bus } from '../../common/bus.js'
import { buildApp, type CacheApp } from '../../cache/app.js'
import { loadCacheConfig } from '../../cache/config.js'
import { METRICS_TOKEN } from '../helpers/metrics.js'
import type { Timers } from '../../cache/coalesce.js'
import type { Logger } from '../../cache/engine.js'

export const TOKEN = 'test-admin-token-0123456789'

export interface Origin {
  url: string
  port: number
  /** Requests by path (health probes excluded). */
  count: (path?: string) => number
  requests: http.IncomingMessage[]
  close: () => Promise<void>
  server: http.Server
}

export type Handler = (req: http.IncomingMessage, res: http.ServerResponse, n: number) => void

export async function startOrigin (handler: Handler): Promise<Origin> {
  const requests: http.IncomingMessage[] = []
  const server = http.createServer((req, res) => {
    if (req.url === '/-/health') { res.end('ok'); return }
    requests.push(req)
    handler(req, res, requests.length)
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const port = (server.address() as AddressInfo).port
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    server,
    requests,
    count: (path?: string) => path === undefined ? requests.length : requests.filter((r) => r.url === path).length,
    close: () => new Promise<void>((resolve) => { server.closeAllConnections(); server.close(() => resolve()) })
  }
}

/** A clock and timers the test moves by hand. */
export class FakeClock implements Timers {
  #now: number
  #timers = new Map<number, { at: number, fn: () => void }>()
  #seq = 0
  constructor (start = Date.UTC(2030, 0, 1)) { this.#now = start }
  now (): number { return this.#now }
  setTimeout (fn: () => void, ms: number): unknown {
    const id = ++this.#seq
    this.#timers.set(id, { at: this.#now + ms, fn })
    return id
  }
  clearTimeout (handle: unknown): void { this.#timers.delete(handle as number) }
  advance (ms: number): void {
    this.#now += ms
    for (const [id, t] of [...this.#timers]) {
      if (t.at <= this.#now) { this.#timers.delete(id); t.fn() }
    }
  }
}

export interface TestCache {
  app: CacheApp
  url: string
  bus: Bus
  clock: FakeClock
  close: () => Promise<void>
}

export async function startCache (upstreams: string | string[], env: Record<string, string> = {}, opts: { bus?: Bus, clock?: FakeClock, logger?: Logger } = {}): Promise<TestCache> {
  const config = loadCacheConfig({
    UPSTREAMS: Array.isArray(upstreams) ? upstreams.join(',') : upstreams,
    ADMIN_TOKEN: TOKEN,
    METRICS_TOKEN,
    CACHE_PROBE_INTERVAL_MS: '0',
    LOG_LEVEL: 'silent',
    ...env
  })
  const bus = opts.bus ?? new MemoryBus()
  const clock = opts.clock ?? new FakeClock()
  const app = buildApp({ config, bus, clock, timers: clock, defaultMetrics: false, logger: opts.logger })
  await app.listen(0, '127.0.0.1')
  return {
    app,
    url: app.url(),
    bus,
    clock,
    close: async () => {
      await app.close()
      if (!opts.bus) await bus.close()
    }
  }
}

export interface Answer { status: number, headers: Record<string, string>, body: string, raw: Buffer }

const agent = new Agent({ keepAliveTimeout: 1000, connections: 512 })

export async function send (url: string, init: { method?: string, headers?: Record<string, string>, body?: string } = {}): Promise<Answer> {
  const r = await request(url, { method: (init.method ?? 'GET') as 'GET', headers: init.headers, body: init.body, dispatcher: agent })
  const raw = Buffer.from(await r.body.arrayBuffer())
  const headers: Record<string, string> = {}
  for (const [k, v] of Object.entries(r.headers)) if (v !== undefined) headers[k] = Array.isArray(v) ? v.join(', ') : v
  return { status: r.statusCode, headers, body: raw.toString('utf8'), raw }
}

export async function closeAgent (): Promise<void> { await agent.close() }

export const admin = { authorization: `Bearer ${TOKEN}` }

/** Origin handler helper: answers `body` with the given headers. */
export function page (headers: Record<string, string | string[]>, body: string | ((n: number, req: http.IncomingMessage) => string) = 'hello'): Handler {
  return (req, res, n) => {
    for (const [k, v] of Object.entries(headers)) res.setHeader(k, v)
    res.end(typeof body === 'function' ? body(n, req) : body)
  }
}

/**
 * Writes raw bytes to the cache and collects everything until the server
 * closes (send `Connection: close`): for request forms undici will not send
 * (absolute-form targets, Expect, odd framing).
 */
export function rawExchange (url: string, text: string): Promise<string> {
  const port = Number(new URL(url).port)
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1', () => socket.write(text))
    let data = ''
    socket.setEncoding('latin1')
    socket.on('data', (d: string) => { data += d })
    socket.on('close', () => resolve(data))
    socket.on('error', reject)
  })
}

/**
 * Writes raw bytes and collects until the cache closes the connection or
 * `waitMs` passes (for answers that keep it open); `closed` says which.
 */
export function rawExchangeFor (url: string, text: string, waitMs: number): Promise<{ data: string, closed: boolean }> {
  const port = Number(new URL(url).port)
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1', () => socket.write(text))
    let data = ''
    let closed = false
    socket.setEncoding('latin1')
    const done = () => { clearTimeout(timer); socket.destroy(); resolve({ data, closed }) }
    const timer = setTimeout(done, waitMs)
    socket.on('data', (d: string) => { data += d })
    socket.on('end', () => { closed = true })
    socket.on('close', done)
    socket.on('error', done)
  })
}

/** The final status code and body of a raw answer (after any 1xx interim responses). */
export function finalAnswer (raw: string): { status: number, head: string, body: string } {
  let rest = raw
  for (;;) {
    const end = rest.indexOf('\r\n\r\n')
    const head = end === -1 ? rest : rest.slice(0, end)
    const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(head)?.[1] ?? 0)
    const body = end === -1 ? '' : rest.slice(end + 4)
    if (status >= 100 && status < 200) { rest = body; continue }
    return { status, head, body }
  }
}
