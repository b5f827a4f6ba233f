/**
 * Form posts go to the backend write services over pooled undici
 * connections. Requests are spread round-robin; a request that carries an
 * Idempotency-Key (every form post does: it is derived from the form instance)
 * is retried on another backend when the first one could not be reached or
 * failed in transit, because the backend guarantees that a replay returns the
 * first answer instead of writing twice (design §2.2). Without a key nothing
 * is retried: a write whose fate is unknown must not be sent again.
 */
import { createHash } from 'node:crypto'
import { Pool } from 'undici'
import { DnsTargets, type Lookup } from '../common/dns-targets.js'

export interface BackendResponse {
  status: number
  headers: Record<string, string | string[] | undefined>
  body: unknown
  /** Which backend answered. */
  origin: string
}

export interface PostOptions {
  idempotencyKey?: string
  /** The visitor's address, for the backend's rate limits. */
  clientIp?: string
}

export interface BackendClient {
  post (path: string, body: unknown, options?: PostOptions): Promise<BackendResponse>
  close (): Promise<void>
}

/** No backend could be reached (or all failed in transit): the write was not acknowledged. */
export class BackendUnavailableError extends Error {
  readonly retryAfter: number
  constructor (message: string, retryAfter = 10, options?: { cause?: unknown }) {
    super(message, options)
    this.name = 'BackendUnavailableError'
    this.retryAfter = retryAfter
  }
}

export interface BackendClientOptions {
  urls: string[]
  timeoutMs: number
  /** Connections per backend. */
  connections?: number
  /** Most backends tried for one idempotent request. */
  maxAttempts?: number
  /**
   * Re-resolution interval of DNS-named backends (compose's `backend`): each
   * address becomes its own pool, so scaled-out backends take writes without
   * a restart. 0 leaves resolution to undici.
   */
  dnsRefreshMs?: number
  lookup?: Lookup
}

/** Answers that mean "this backend could not do it now": another one may (with a key only). */
const RETRYABLE_STATUS = new Set([502, 503, 504])
const MAX_RESPONSE_BYTES = 256 * 1024

export function createBackendClient (options: BackendClientOptions): BackendClient {
  if (!Array.isArray(options.urls) || options.urls.length === 0) throw new TypeError('createBackendClient: urls must list at least one backend URL')
  for (const u of options.urls) {
    const parsed = new URL(u)
    if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') throw new TypeError(`createBackendClient: ${u} is not an http(s) URL`)
  }
  if (!Number.isInteger(options.timeoutMs) || options.timeoutMs <= 0) throw new RangeError(`createBackendClient: timeoutMs must be a positive integer, got ${options.timeoutMs}`)
  for (const u of options.urls) {
    if (new URL(u).pathname.replace(/\/$/, '') !== '') throw new TypeError(`createBackendClient: ${u} must be an origin (no path)`)
  }
  interface Backend { origin: string, pool: Pool }
  const makeBackend = (origin: string): Backend => ({
    origin,
    pool: new Pool(origin, {
      connections: options.connections ?? 16,
      headersTimeout: options.timeoutMs,
      bodyTimeout: options.timeoutMs,
      connectTimeout: Math.min(options.timeoutMs, 2000),
      keepAliveTimeout: 10_000
    })
  })
  let backends: Backend[] = []
  const setOrigins = (origins: string[]) => {
    const current = new Map(backends.map((b) => [b.origin, b]))
    const nextBackends = origins.map((o) => current.get(o) ?? makeBackend(o))
    for (const b of backends) if (!origins.includes(b.origin)) void b.pool.close().catch(() => {})
    backends = nextBackends
  }
  const dns = new DnsTargets({ urls: options.urls, intervalMs: options.dnsRefreshMs, lookup: options.lookup, onChange: setOrigins })
  setOrigins(dns.origins)
  if ((options.dnsRefreshMs ?? 0) > 0) dns.start()
  let next = 0

  async function once (backend: typeof backends[number], path: string, payload: string, opts: PostOptions, timeoutMs: number): Promise<BackendResponse> {
    const headers: Record<string, string> = { 'content-type': 'application/json', accept: 'application/json' }
    if (opts.idempotencyKey) headers['idempotency-key'] = opts.idempotencyKey
    if (opts.clientIp) headers['x-forwarded-for'] = opts.clientIp
    const res = await backend.pool.request({ method: 'POST', path, headers, body: payload, signal: AbortSignal.timeout(timeoutMs) })
    const chunks: Buffer[] = []
    let size = 0
    for await (const chunk of res.body) {
      size += (chunk as Buffer).length
      if (size > MAX_RESPONSE_BYTES) { res.body.destroy(); throw new Error('backend answer too large') }
      chunks.push(chunk as Buffer)
    }
    const text = Buffer.concat(chunks).toString('utf8')
    let body: unknown = null
    if (text) {
      try { body = JSON.parse(text) } catch { body = { error: 'bad_gateway', message: 'the backend answered something that is not JSON' } }
    }
    return { status: res.statusCode, headers: res.headers, body, origin: backend.origin }
  }

  return {
    async post (path, body, opts = {}) {
      const payload = JSON.stringify(body)
      const maxAttempts = Math.max(1, Math.min(options.maxAttempts ?? 3, backends.length))
      const attempts = opts.idempotencyKey ? maxAttempts : 1
      const start = next++ % backends.length
      // One deadline for all attempts: the visitor's wait is bounded by timeoutMs, however
      // many backends are tried (the cache in front gives up after its own upstream timeout).
      const deadline = Date.now() + options.timeoutMs
      let lastError: unknown
      for (let i = 0; i < attempts; i++) {
        const left = deadline - Date.now()
        if (left <= 0) break
        const backend = backends[(start + i) % backends.length]
        try {
          const res = await once(backend, path, payload, opts, left)
          if (RETRYABLE_STATUS.has(res.status) && i + 1 < attempts && deadline - Date.now() > 0) { lastError = new Error(`backend ${backend.origin} answered ${res.status}`); continue }
          return res
        } catch (err) {
          lastError = err
        }
      }
      throw new BackendUnavailableError('no backend acknowledged the write', 10, { cause: lastError })
    },
    async close () {
      dns.stop()
      await Promise.all(backends.map((b) => b.pool.close()))
    }
  }
}

/**
 * The key a form post carries: what was submitted, through which form, from
 * which form instance (`nonce`, the hidden field form-nonce.js fills once per
 * visit, or the server made for a form it showed one visitor). A double click,
 * the browser's re-submission and the frontend's own retries repeat one
 * instance, so one key and one write; two visitors typing the same words into
 * the same cached page behind the same school address are two instances, so
 * two keys and two writes (design §2.2). The visitor's address is not part of
 * it: the nonce alone tells visitors apart, and a phone that changes networks
 * between two clicks must not make two writes.
 */
export function submissionKey (parts: { action: string, fields: Record<string, string>, nonce: string }): string {
  const fields = Object.keys(parts.fields).sort().map((k) => [k, parts.fields[k]])
  const digest = createHash('sha256').update(JSON.stringify([parts.action, fields, parts.nonce])).digest('base64url')
  return `fe-${digest}`
}
