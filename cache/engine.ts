/**
 * Everything the steps share for the life of the app: built once by app.ts,
 * handed to every request context by reference.
 */
import type { Bus } from '../common/bus.js'
import type { CacheConfig } from './config.js'
import type { CacheStore } from './store.js'
import type { Coalescer, Timers } from './coalesce.js'
import type { Director } from './director.js'
import type { CacheMetrics } from './metrics.js'
import type { InvalidationLog } from './ban.js'
import type { Clock, PolicyClass } from './freshness.js'
import type { Trust } from '../common/trusted-proxies.js'
import type { BodyBudget } from './request-body.js'
import type { BusPosition } from '../common/bus-position.js'
import type { NodeLock } from './node-lock.js'
import type { CdnIdentity } from '../common/cdn.js'

export interface Logger {
  debug (obj: object | string, msg?: string): void
  info (obj: object | string, msg?: string): void
  warn (obj: object | string, msg?: string): void
  error (obj: object | string, msg?: string): void
}

export const silentLogger: Logger = { debug () {}, info () {}, warn () {}, error () {} }

export interface Engine {
  config: CacheConfig
  store: CacheStore
  coalescer: Coalescer
  director: Director
  metrics: CacheMetrics
  log: InvalidationLog
  bus: Bus
  clock: Clock
  timers: Timers
  Policy: PolicyClass
  logger: Logger
  /** Hops whose X-Forwarded-For is believed (CACHE_TRUSTED_PROXIES; forwarded.ts). */
  trustProxy: Trust
  /** The CDN in front, whose client field names the visitor from its addresses (common/cdn.ts); absent without one. */
  cdn?: CdnIdentity
  /** Targeted cache-control fields this node obeys, in order (RFC 9213 §2.1; freshness.ts `targetedFields`). */
  targets: readonly string[]
  /** Deliver Surrogate-Key to the CDN in front (CACHE_DELIVER_SURROGATE_KEY). */
  deliverTags: boolean
  /** Request body bytes held by passed requests (request-body.ts). */
  bodies: BodyBudget
  /** Upstream answer bytes held by fetches until stored or delivered (fetch.ts `collect`). */
  fetchBuffers: BodyBudget
  /** The node-wide fetch lock when several workers share one store (node-lock.ts); absent in single-process mode. */
  nodeLock?: NodeLock
  /** Newest bus event this node applied; named on every fetch for the store (invalidated-after.ts). */
  position?: BusPosition
}
