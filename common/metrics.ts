/**
 * Prometheus metrics shared by every role: one registry per app, request
 * counts and latency histograms by route and status, and `GET /-/metrics`
 * for the scraper that presents `Authorization: Bearer $METRICS_TOKEN`.
 */
import fp from 'fastify-plugin'
import type { FastifyInstance } from 'fastify'
import { Registry, Counter, Histogram, Gauge, collectDefaultMetrics } from 'prom-client'
import { requireBearer } from './bearer-token.js'

export interface Metrics {
  registry: Registry
  requests: Counter<'method' | 'route' | 'status'>
  duration: Histogram<'method' | 'route' | 'status'>
}

export function createMetrics (options: { role: string, defaults?: boolean }): Metrics {
  const registry = new Registry()
  registry.setDefaultLabels({ role: options.role })
  if (options.defaults !== false) collectDefaultMetrics({ register: registry })
  const requests = new Counter({
    name: 'flashcrowd_http_requests_total',
    help: 'HTTP requests answered, by route and status',
    labelNames: ['method', 'route', 'status'] as const,
    registers: [registry]
  })
  const duration = new Histogram({
    name: 'flashcrowd_http_request_duration_seconds',
    help: 'HTTP request latency, by route and status',
    labelNames: ['method', 'route', 'status'] as const,
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
    registers: [registry]
  })
  return { registry, requests, duration }
}

/** Pool usage gauges, read when scraped. */
export function registerPoolGauges (metrics: Metrics, name: string, pool: { totalCount: number, idleCount: number, waitingCount: number }): void {
  new Gauge({
    name: `flashcrowd_${name}_pool_connections`,
    help: `${name} pool connections by state`,
    labelNames: ['state'] as const,
    registers: [metrics.registry],
    collect () {
      this.set({ state: 'total' }, pool.totalCount)
      this.set({ state: 'idle' }, pool.idleCount)
      this.set({ state: 'waiting' }, pool.waitingCount)
    }
  })
}

/**
 * One read shared by every gauge that a scrape collects from it: prom-client
 * collects a registry's metrics concurrently, so the read is shared while in
 * flight (and until the scrape's other collectors have run), then made anew.
 */
export function oneReadPerScrape<T> (read: () => Promise<T>): () => Promise<T> {
  let current: Promise<T> | undefined
  return () => (current ??= read().finally(() => { setTimeout(() => { current = undefined }, 0) }))
}

type Queryable = { query: <R extends object>(text: string) => Promise<{ rows: R[] }> }

/**
 * The primary this role writes to, read when scraped: its timeline rises by
 * one at every promotion (a failover or a switchover, Patroni or
 * CloudNativePG), and its postmaster's start time moves when the server
 * behind the address was restarted or replaced (RDS Multi-AZ fails over on
 * the same timeline). A database that does not answer leaves the last values.
 */
export function registerPrimaryGauges (metrics: Metrics, pool: Queryable): void {
  type Row = { timeline: number, started: number }
  const read = oneReadPerScrape(() => pool.query<Row>(
    "select ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int as timeline, extract(epoch from pg_postmaster_start_time())::float8 as started"
  ).then((r): Row | undefined => r.rows[0], () => undefined))
  new Gauge({
    name: 'flashcrowd_database_timeline',
    help: 'Timeline of the primary PostgreSQL this role writes to (rises by one at each promotion: a failover)',
    registers: [metrics.registry],
    async collect () { const row = await read(); if (row !== undefined) this.set(row.timeline) }
  })
  new Gauge({
    name: 'flashcrowd_database_start_time_seconds',
    help: 'Start time of the primary PostgreSQL server this role writes to (Unix seconds; changes when it was restarted or replaced)',
    registers: [metrics.registry],
    async collect () { const row = await read(); if (row !== undefined) this.set(row.started) }
  })
}

/**
 * How far the read pool's server trails its primary, read when scraped: 0 on
 * a primary and on a replica that has replayed all it received; otherwise the
 * time since the last transaction it replayed committed (PostgreSQL's own
 * measure; it overstates the lag after an idle spell, for the moments until
 * the replica replays the next commit).
 */
export function registerReplicaLagGauge (metrics: Metrics, pool: Queryable): void {
  new Gauge({
    name: 'flashcrowd_database_replica_lag_seconds',
    help: 'Seconds the read pool\'s server trails the primary (0 on a primary or a caught-up replica; -1 while it does not answer)',
    registers: [metrics.registry],
    async collect () {
      const r = await pool.query<{ lag: number }>(
        'select case when not pg_is_in_recovery() or pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() then 0 ' +
        'else coalesce(extract(epoch from now() - pg_last_xact_replay_timestamp())::float8, 0) end as lag'
      ).catch(() => undefined)
      this.set(r === undefined ? -1 : Math.max(0, r.rows[0]?.lag ?? 0))
    }
  })
}

declare module 'fastify' {
  interface FastifyInstance { metrics: Metrics }
}

/**
 * Times every request by its route pattern (never the raw URL: label
 * cardinality must stay bounded under a flood of distinct URLs).
 */
export const metricsPlugin = fp(async function metricsPlugin (app: FastifyInstance, opts: { metrics: Metrics, token: string | undefined }) {
  app.decorate('metrics', opts.metrics)
  // The labelled series of each method/route/status, looked up once: prom-client
  // hashes a label object on every call, a cost paid on every request otherwise.
  const series = new Map<string, { count: () => void, time: (seconds: number) => void }>()
  const seriesOf = (method: string, route: string, status: number) => {
    const id = `${method} ${status} ${route}`
    let found = series.get(id)
    if (found === undefined) {
      const counter = opts.metrics.requests.labels(method, route, String(status))
      const histogram = opts.metrics.duration.labels(method, route, String(status))
      found = { count: () => counter.inc(), time: (seconds) => histogram.observe(seconds) }
      series.set(id, found)
    }
    return found
  }
  // A callback hook: no promise per request.
  app.addHook('onResponse', (request, reply, done) => {
    const s = seriesOf(request.method, request.routeOptions.url ?? 'unmatched', reply.statusCode)
    s.count()
    s.time(reply.elapsedTime / 1000)
    done()
  })
  // The scraper's door only (METRICS_TOKEN): the counters and the upstreams'
  // addresses are not for visitors, whatever routes a request here.
  app.get('/-/metrics', { logLevel: 'warn', onRequest: requireBearer(opts.token) }, async (_request, reply) => {
    reply.header('content-type', opts.metrics.registry.contentType)
    reply.header('cache-control', 'no-store')
    return opts.metrics.registry.metrics()
  })
}, { name: 'flashcrowd-metrics', fastify: '5.x' })
