/** Starts the backend app on port 0 against a test database, with a recording bus. */
import type { Test } from 'tap'
import type { FastifyBaseLogger, FastifyInstance, FastifyRequest } from 'fastify'
import { buildApp } from '../../backend/app.js'
import { loadBackendConfig } from '../../backend/config.js'
import { createDatabase, type DatabaseHandle } from '../../common/db.js'
import { METRICS_TOKEN } from './metrics.js'
import { MemoryBus, type Bus, type BusMessage } from '../../common/bus.js'

export const ADMIN_TOKEN = 'test-admin-token-0123456789'

export interface RunningBackend {
  url: string
  app: FastifyInstance
  database: DatabaseHandle
  bus: Bus
  messages: BusMessage[]
  post: (path: string, body: unknown, headers?: Record<string, string>) => Promise<{ status: number, headers: Headers, json: any }>
}

export async function startBackend (t: Test, databaseUrl: string, env: Record<string, string> = {}, options: { bus?: Bus, now?: () => number, logger?: FastifyBaseLogger, onRequest?: (req: FastifyRequest) => void } = {}): Promise<RunningBackend> {
  const config = loadBackendConfig({ ADMIN_TOKEN, METRICS_TOKEN, BACKEND_RATE_LIMIT_MAX: '0', BACKEND_RATE_LIMIT_SAME_MAX: '0', BACKEND_OUTBOX_POLL_MS: '50', LOG_LEVEL: 'silent', DATABASE_CONNECT_TIMEOUT_MS: '5000', ...env })
  const database = createDatabase({ url: databaseUrl, max: config.DATABASE_POOL_MAX, connectTimeoutMs: config.DATABASE_CONNECT_TIMEOUT_MS, statementTimeoutMs: config.DATABASE_STATEMENT_TIMEOUT_MS })
  const bus = options.bus ?? new MemoryBus()
  const messages: BusMessage[] = []
  bus.subscribe((m) => { messages.push(m) })
  const app = await buildApp({ config, database, bus, logger: options.logger ?? false, now: options.now })
  // What the backend saw of each request (the address it derived, say): the app writes no access log.
  const seen = options.onRequest
  if (seen) app.addHook('onResponse', async (req) => { seen(req) })
  await app.listen({ host: '127.0.0.1', port: 0 })
  t.teardown(async () => { await app.close(); await database.close() })
  const address = app.server.address() as { port: number }
  const url = `http://127.0.0.1:${address.port}`
  return {
    url, app, database, bus, messages,
    async post (path, body, headers = {}) {
      const res = await fetch(url + path, {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...headers },
        body: typeof body === 'string' || body instanceof Uint8Array ? body : JSON.stringify(body)
      })
      const text = await res.text()
      let json: unknown
      try { json = JSON.parse(text) } catch { json = text }
      return { status: res.status, headers: res.headers, json }
    }
  }
}

/** Waits until `check` is true (polling), or fails after `ms`. */
export async function eventually (check: () => boolean | Promise<boolean>, ms = 3000): Promise<boolean> {
  const deadline = Date.now() + ms
  while (Date.now() < deadline) {
    if (await check()) return true
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
  return check()
}
