/**
 * Prometheus metrics shared by every role: one registry per app, request
 * counts and latency histograms by route and status, and `GET /-/metrics`.
 */
import fp from 'fastify-plugin'
import type { FastifyInstance } from 'fastify'
import { Registry, Counter, Histogram, Gauge, collectDefaultMetrics } from 'prom-client'

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

declare module 'fastify' {
  interface FastifyInstance { metrics: Metrics }
}

/**
 * Times every request by its route pattern (never the raw URL: label
 * cardinality must stay bounded under a flood of distinct URLs).
 */
export const metricsPlugin = fp(async function metricsPlugin (app: FastifyInstance, opts: { metrics: Metrics }) {
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
  app.get('/-/metrics', { logLevel: 'warn' }, async (_request, reply) => {
    reply.header('content-type', opts.metrics.registry.contentType)
    reply.header('cache-control', 'no-store')
    return opts.metrics.registry.metrics()
  })
}, { name: 'flashcrowd-metrics', fastify: '5.x' })
