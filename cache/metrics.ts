/**
 * Cache metrics. The hit path only bumps plain numbers (a prom-client label
 * lookup per hit would cost more than the hit itself); prom-client reads them
 * when `/-/metrics` is scraped.
 */
import { Counter, Gauge, Histogram } from 'prom-client'
import { createMetrics, type Metrics } from '../common/metrics.js'
import type { Director } from './director.js'
import type { CacheStore } from './store.js'
import type { Coalescer } from './coalesce.js'
import type { BodyBudget } from './request-body.js'

export interface CacheCounters {
  hits: number
  misses: number
  stale: number
  pass: number
  synth: number
  evictions: number
  /** Objects stored. */
  stored: number
  /** New objects the store's admission test kept out (store.ts, admission.ts). */
  notAdmitted: number
  purges: { url: number, keys: number, ban: number, soft: number, gap: number }
  /** 5xx answers visitors got (the cache's own 502/503/504 and upstream 5xx passed on), by status. */
  serverErrors: Map<number, number>
  /** Objects received from sibling workers (share.ts), by what became of them. */
}

export interface CacheMetrics {
  counters: CacheCounters
  metrics: Metrics
  upstreamLatency: Histogram<'upstream'>
  render (): Promise<string>
  contentType: string
}

/** Off the hit path: only a 5xx answer pays for the map lookup. */
export function countServerError (counters: CacheCounters, status: number): void {
  counters.serverErrors.set(status, (counters.serverErrors.get(status) ?? 0) + 1)
}

export function createCacheMetrics (deps: { store: CacheStore, director: Director, coalescer: Coalescer, bodies?: BodyBudget, fetchBuffers?: BodyBudget, defaults?: boolean }): CacheMetrics {
  const counters: CacheCounters = { hits: 0, misses: 0, stale: 0, pass: 0, synth: 0, evictions: 0, stored: 0, notAdmitted: 0, purges: { url: 0, keys: 0, ban: 0, soft: 0, gap: 0 }, serverErrors: new Map() }
  const metrics = createMetrics({ role: 'cache', defaults: deps.defaults })
  const registers = [metrics.registry]

  new Counter({
    name: 'flashcrowd_cache_requests_total',
    help: 'Requests by cache outcome (hit, miss, stale, pass, synth)',
    labelNames: ['outcome'] as const,
    registers,
    collect () {
      this.reset()
      this.inc({ outcome: 'hit' }, counters.hits)
      this.inc({ outcome: 'miss' }, counters.misses)
      this.inc({ outcome: 'stale' }, counters.stale)
      this.inc({ outcome: 'pass' }, counters.pass)
      this.inc({ outcome: 'synth' }, counters.synth)
    }
  })
  new Counter({
    name: 'flashcrowd_cache_coalesced_waits_total',
    help: 'Requests that waited on another request\'s fetch instead of going upstream',
    registers,
    collect () { this.reset(); this.inc(deps.coalescer.waits) }
  })
  new Counter({
    name: 'flashcrowd_cache_purges_total',
    help: 'Invalidations applied, by kind',
    labelNames: ['kind'] as const,
    registers,
    collect () {
      this.reset()
      for (const [kind, n] of Object.entries(counters.purges)) this.inc({ kind }, n)
    }
  })
  new Counter({
    name: 'flashcrowd_cache_server_errors_total',
    help: '5xx answers sent to clients, by status: the cache\'s own (503 no healthy upstream, too many waiters or bodies; 502/504 upstream failures) and upstream 5xx passed on',
    labelNames: ['code'] as const,
    registers,
    collect () {
      this.reset()
      for (const [code, n] of counters.serverErrors) this.inc({ code: String(code) }, n)
    }
  })
  new Counter({
    name: 'flashcrowd_cache_evictions_total',
    help: 'Objects evicted by the LRU to stay under CACHE_MAX_BYTES',
    registers,
    collect () { this.reset(); this.inc(counters.evictions) }
  })
  new Counter({
    name: 'flashcrowd_cache_objects_stored_total',
    help: 'Objects written to the store',
    registers,
    collect () { this.reset(); this.inc(counters.stored) }
  })
  new Counter({
    name: 'flashcrowd_cache_objects_not_admitted_total',
    help: 'Fetched objects kept out of a full store because they were read less often than what they would push out (TinyLFU)',
    registers,
    collect () { this.reset(); this.inc(counters.notAdmitted) }
  })
  new Gauge({
    name: 'flashcrowd_cache_bytes_stored',
    help: 'Bytes held by the object store',
    registers,
    collect () { this.set(deps.store.bytes) }
  })
  new Gauge({
    name: 'flashcrowd_cache_objects',
    help: 'Objects held by the object store',
    registers,
    collect () { this.set(deps.store.count) }
  })
  new Gauge({
    name: 'flashcrowd_cache_inflight_body_bytes',
    help: 'Request body bytes held by passed requests (bounded by CACHE_MAX_INFLIGHT_BODY_BYTES)',
    registers,
    collect () { this.set(deps.bodies?.inflight ?? 0) }
  })
  new Gauge({
    name: 'flashcrowd_cache_fetch_buffer_bytes',
    help: 'Upstream answer bytes held by fetches until stored or taken by their client (bounded by CACHE_MAX_FETCH_BUFFER_BYTES)',
    registers,
    collect () { this.set(deps.fetchBuffers?.inflight ?? 0) }
  })
  new Gauge({
    name: 'flashcrowd_cache_upstream_healthy',
    help: '1 when the upstream is receiving traffic (probe healthy and not ejected)',
    labelNames: ['upstream'] as const,
    registers,
    collect () {
      for (const u of deps.director.upstreams) this.set({ upstream: u.url }, deps.director.isUp(u) ? 1 : 0)
    }
  })
  new Gauge({
    name: 'flashcrowd_cache_upstream_inflight',
    help: 'Fetches in flight per upstream',
    labelNames: ['upstream'] as const,
    registers,
    collect () {
      for (const u of deps.director.upstreams) this.set({ upstream: u.url }, u.inflight)
    }
  })
  const upstreamLatency = new Histogram({
    name: 'flashcrowd_cache_upstream_seconds',
    help: 'Time to response headers from each upstream',
    labelNames: ['upstream'] as const,
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers
  })
  return {
    counters,
    metrics,
    upstreamLatency,
    render: () => metrics.registry.metrics(),
    contentType: metrics.registry.contentType
  }
}
