/**
 * Starting frontends (and real backends) for the frontend tests.
 */
import { randomBytes } from 'node:crypto'
import type { Test } from 'tap'
import type { FastifyInstance } from 'fastify'
import { createDatabase, type DatabaseHandle } from '../../common/db.js'
import { MemoryBus, type Bus } from '../../common/bus.js'
import { loadFrontendConfig, primaryReadUrl } from '../../frontend/config.js'
import { buildApp } from '../../frontend/app.js'
import { METRICS_TOKEN } from '../helpers/metrics.js'
import { buildAssets, type BuiltAssets } from '../../frontend/assets.js'
import { createBackendClient, type BackendClient } from '../../frontend/backend-client.js'
import type { ReplayProbe } from '../../frontend/read-your-writes.js'
import { buildApp as buildCache } from '../../cache/app.js'
import { loadCacheConfig } from '../../cache/config.js'
import { startBackend as startSharedBackend, eventually as pollUntil } from '../helpers/backend.js'

let assets: Promise<BuiltAssets> | undefined
export function sharedAssets (): Promise<BuiltAssets> {
  assets ??= buildAssets()
  return assets
}

export interface FrontendOptions {
  /** Read pool URL (defaults to the test database). */
  readUrl?: string
  backendUrls?: string[]
  bus?: Bus
  env?: Record<string, string>
  now?: () => number
  replayProbe?: ReplayProbe
  backend?: BackendClient
  redis?: import('ioredis').Redis
}

export interface StartedFrontend {
  app: FastifyInstance
  bus: Bus
  db: DatabaseHandle
  primary?: DatabaseHandle
}

export async function startFrontend (t: Test, databaseUrl: string, options: FrontendOptions = {}): Promise<StartedFrontend> {
  const config = loadFrontendConfig({
    LOG_LEVEL: 'silent',
    METRICS_TOKEN,
    // The primary (for read-your-writes beyond the replica's lag); unused when the read pool is the primary.
    DATABASE_URL: databaseUrl,
    DATABASE_READ_URL: options.readUrl ?? databaseUrl,
    BACKEND_URL: (options.backendUrls ?? ['http://127.0.0.1:9']).join(','),
    FRONTEND_BACKEND_TIMEOUT_MS: '2000',
    ...options.env
  })
  const db = createDatabase({ url: config.DATABASE_READ_URL!, readOnly: true, max: options.env?.DATABASE_POOL_MAX ? config.DATABASE_POOL_MAX : 4, connectTimeoutMs: config.DATABASE_CONNECT_TIMEOUT_MS })
  // Replay probes on a connection of their own, as server.ts does.
  const probeDb = options.replayProbe ? undefined : createDatabase({ url: config.DATABASE_READ_URL!, readOnly: true, max: 1, connectTimeoutMs: config.DATABASE_CONNECT_TIMEOUT_MS })
  // The primary for authors the read pool keeps waiting, as server.ts opens it.
  const primaryUrl = primaryReadUrl(config)
  const primary = primaryUrl ? createDatabase({ url: primaryUrl, readOnly: true, max: config.FRONTEND_PRIMARY_POOL_MAX, connectTimeoutMs: config.DATABASE_CONNECT_TIMEOUT_MS }) : undefined
  const bus = options.bus ?? new MemoryBus()
  const backend = options.backend ?? createBackendClient({ urls: (options.backendUrls ?? ['http://127.0.0.1:9']), timeoutMs: 2000 })
  const app = await buildApp({ config, db, probeDb, primary, bus, backend, logger: false, now: options.now, replayProbe: options.replayProbe, assets: await sharedAssets(), redis: options.redis })
  t.teardown(async () => {
    await app.close()
    await backend.close()
    await db.close()
    await probeDb?.close()
    await primary?.close()
  })
  await app.ready()
  return { app, bus, db, primary }
}

/** The real backend (backend/app.ts) on port 0, writing to `databaseUrl`, publishing on `bus`. */
export async function startBackend (t: Test, databaseUrl: string, bus: Bus, env: Record<string, string> = {}): Promise<{ url: string, app: FastifyInstance }> {
  const { url, app } = await startSharedBackend(t, databaseUrl, env, { bus })
  return { url, app }
}

/** A form identity as form-nonce.js makes one (128 random bits, hex). */
export function browserNonce (): string {
  return randomBytes(16).toString('hex')
}

/**
 * A same-origin form post as a browser with JavaScript sends it: each call is
 * a new form instance (its own `form_nonce`) unless `fields` names one; pass
 * the same nonce twice for a double click, `form_nonce: ''` for a page whose
 * script did not run.
 */
export function formPost (url: string, fields: Record<string, string>, headers: Record<string, string> = {}) {
  const withNonce = 'form_nonce' in fields ? fields : { ...fields, form_nonce: browserNonce() }
  return {
    method: 'POST' as const,
    url,
    headers: { 'content-type': 'application/x-www-form-urlencoded', origin: 'http://localhost:80', host: 'localhost:80', ...headers },
    payload: new URLSearchParams(withNonce).toString()
  }
}

/** Waits until `check` is true (polling), failing after `ms`. */
export async function eventually (check: () => Promise<boolean> | boolean, ms = 3000): Promise<void> {
  if (!await pollUntil(check, ms)) throw new Error('condition not met in time')
}

/** `n` calls of `fn`, `limit` at a time (a classroom presses within seconds, not within one millisecond). */
export async function pool<T> (n: number, limit: number, fn: (i: number) => Promise<T>): Promise<T[]> {
  const out: T[] = new Array(n)
  let next = 0
  await Promise.all(Array.from({ length: limit }, async () => {
    while (next < n) { const i = next++; out[i] = await fn(i) }
  }))
  return out
}

/** A cache node (one worker, no probes) in front of a listening frontend, on port 0; `env` adds cache settings. */
export async function startCacheBefore (t: Test, frontend: FastifyInstance, bus: Bus, env: Record<string, string> = {}) {
  const cache = buildCache({
    config: loadCacheConfig({ UPSTREAMS: `http://127.0.0.1:${(frontend.server.address() as { port: number }).port}`, LOG_LEVEL: 'silent', CACHE_PROBE_INTERVAL_MS: '0', CACHE_WORKERS: '1', ...env }),
    bus,
    defaultMetrics: false
  })
  await cache.listen(0, '127.0.0.1')
  t.teardown(() => cache.close())
  return cache
}
