/**
 * The cache as an app: `buildApp(deps)` wires the store, coalescer, director,
 * metrics and invalidation bus around two listeners in series: the hit front
 * (hit-front.ts, a plain net.Server answering plain hits from prepared bytes)
 * and behind it a raw node:http server for everything else (Fastify's
 * per-request cost would dominate a cache hit; see issue 5). With
 * CACHE_HIT_FRONT=false node's server listens alone. server.ts only reads
 * config, builds, listens and closes.
 */
import http from 'node:http'
import type net from 'node:net'
import type { AddressInfo } from 'node:net'
import type { Duplex } from 'node:stream'
import type { Bus } from '../common/bus.js'
import type { CacheConfig } from './config.js'
import { MemoryStore, type CacheStore } from './store.js'
import { Coalescer, systemTimers, type Timers } from './coalesce.js'
import { Director } from './director.js'
import { createCacheMetrics } from './metrics.js'
import { InvalidationLog } from './ban.js'
import { policyClassFor, systemClock, targetedFields, type Clock } from './freshness.js'
import { subscribeInvalidations } from './invalidation.js'
import { parseStrictHead } from './head-parser.js'
import { answerInvalidation } from './purge.js'
import { Ctx, drive, plainHit, purgeDeps } from './state-machine.js'
import { createHitFront } from './hit-front.js'
import { inTurn, isRejected, onClientError, rawAnswer, refuseExpectation } from './client-errors.js'
import { clientHeadLimit, parserFieldCount } from './request-head.js'
import { BodyBudget } from './request-body.js'
import { silentLogger, type Engine, type Logger } from './engine.js'
import { list } from '../common/config.js'
import { compileTrust } from '../common/trusted-proxies.js'
import { cdnIdentity } from '../common/cdn.js'
import { policy } from './policy.js'
import { Reclaimer } from './reclaim.js'
import { SharedStore } from './shared-store.js'
import type { NodeLock } from './node-lock.js'
import { createBusPosition } from './invalidated-after.js'

export interface CacheDeps {
  config: CacheConfig
  bus: Bus
  logger?: Logger
  /** Injected for tests (fake time for TTL, grace and staleness). */
  clock?: Clock
  timers?: Timers
  store?: CacheStore
  /** Collect process-level default metrics (off in tests that build many apps). */
  defaultMetrics?: boolean
  /**
   * Several workers on one node: the directory of the store they all open
   * (shared-store.ts) and the node-wide fetch lock (node-lock.ts).
   */
  shared?: { path: string, lock: NodeLock, workers: number }
}

export interface CacheApp {
  server: http.Server
  engine: Engine
  listen (port?: number, host?: string): Promise<AddressInfo>
  close (): Promise<void>
  /** Base URL once listening. */
  url (): string
}

export function buildApp (deps: CacheDeps): CacheApp {
  const { config } = deps
  const clock = deps.clock ?? systemClock
  const timers = deps.timers ?? systemTimers
  const logger = deps.logger ?? silentLogger
  let onEvict = (): void => {}
  let onReject = (): void => {}
  // Below ~64 MB of evictions (or objects refused admission, which die the
  // same way once served) V8 would not collect the dead bodies by itself (reclaim.ts).
  const reclaimer = new Reclaimer({ thresholdBytes: Math.min(32 * 1024 * 1024, Math.max(2 * 1024 * 1024, config.CACHE_MAX_BYTES / 4)) })
  // CACHE_MAX_BYTES bounds everything the cache keeps per key (design §2.7):
  // a thirty-second of it for hit-for-miss markers, the rest for objects.
  const markerBytes = Math.max(64 * 1024, Math.floor(config.CACHE_MAX_BYTES / 32))
  const Policy = policyClassFor(clock)
  // Several workers: one store for all of them (shared-store.ts).
  const store: CacheStore = deps.store ?? (deps.shared !== undefined
    ? new SharedStore({
      path: deps.shared.path,
      // A ninth of the budget, split between the workers, holds each one's
      // hot pages decoded (shared-store.ts memo); the store gets the rest, so
      // the two together stay within CACHE_MAX_BYTES.
      maxBytes: Math.floor((config.CACHE_MAX_BYTES - markerBytes) * 8 / 9),
      memoBytes: Math.floor((config.CACHE_MAX_BYTES - markerBytes) / 9 / deps.shared.workers),
      Policy,
      onEvict: () => { onEvict() },
      onReject: () => { onReject() },
      // Copies read for cold objects and fetched objects once stored die in
      // this worker's heap: the reclaimer collects them (reclaim.ts).
      onGarbage: (bytes) => { reclaimer.evicted(bytes) }
    })
    : new MemoryStore({ maxBytes: config.CACHE_MAX_BYTES - markerBytes, onEvict: (o) => { onEvict(); reclaimer.evicted(o.size) }, onReject: (o) => { onReject(); reclaimer.evicted(o.size) } }))
  const coalescer = new Coalescer({
    maxMarkerBytes: markerBytes,
    maxWaiters: config.CACHE_COALESCE_MAX_WAITERS,
    timeoutMs: config.CACHE_COALESCE_TIMEOUT_MS,
    hitForMissMs: config.CACHE_HIT_FOR_MISS_SECONDS * 1000,
    clock,
    timers
  })
  let observe = (_u: string, _s: number): void => {}
  const director = new Director({
    upstreams: list(config.UPSTREAMS),
    mode: config.CACHE_DIRECTOR,
    connections: config.CACHE_UPSTREAM_CONNECTIONS,
    timeoutMs: config.CACHE_UPSTREAM_TIMEOUT_MS,
    probeIntervalMs: config.CACHE_PROBE_INTERVAL_MS,
    probeTimeoutMs: config.CACHE_PROBE_TIMEOUT_MS,
    probePath: config.CACHE_PROBE_PATH,
    probeExpect: config.CACHE_PROBE_EXPECT_STATUS,
    logger,
    ejectAfterErrors: config.CACHE_EJECT_AFTER_ERRORS,
    ejectMs: config.CACHE_EJECT_MS,
    dnsRefreshMs: config.CACHE_DNS_REFRESH_MS,
    clock,
    onFetch: (u, seconds) => observe(u.url, seconds)
  })
  // Bodies read and let go are garbage outside the V8 heap, like evicted objects: the reclaimer collects them.
  const bodies = new BodyBudget(config.CACHE_MAX_INFLIGHT_BODY_BYTES, (n) => { reclaimer.evicted(n) })
  const fetchBuffers = new BodyBudget(config.CACHE_MAX_FETCH_BUFFER_BYTES, (n) => { reclaimer.evicted(n) })
  const metrics = createCacheMetrics({ store, director, coalescer, bodies, fetchBuffers, defaults: deps.defaultMetrics })
  onEvict = () => { metrics.counters.evictions++ }
  onReject = () => { metrics.counters.notAdmitted++ }
  observe = (u, s) => metrics.upstreamLatency.observe({ upstream: u }, s)
  const log = new InvalidationLog()
  const position = createBusPosition()
  const engine: Engine = {
    config, store, coalescer, director, metrics, log, bus: deps.bus, clock, timers, Policy, logger, trustProxy: compileTrust(config.CACHE_TRUSTED_PROXIES), bodies, fetchBuffers, position,
    cdn: cdnIdentity(config),
    targets: targetedFields(config.CACHE_EDGE),
    // Fastly and a flashcrowd edge purge by Surrogate-Key, so they must see it (and remove it before the visitor does).
    deliverTags: config.CACHE_DELIVER_SURROGATE_KEY || config.CDN_PROVIDER === 'fastly' || config.CDN_PROVIDER === 'flashcrowd'
  }
  const applyDeps = { store, log, now: () => clock.now() }

  engine.nodeLock = deps.shared?.lock

  // Every node applies every event, its own included (the bus echoes them back;
  // applying twice is harmless) and the backend's outbox events.
  const unsubscribe = subscribeInvalidations({
    ...applyDeps,
    bus: deps.bus,
    onApplied: (m, touched) => {
      // After applying: fetches from now on ask frontends for nothing older than this event.
      position.advance(m.id)
      const kind = m.event.kind
      metrics.counters.purges[kind]++
      if (kind !== 'ban' && m.event.soft) metrics.counters.purges.soft++
      // One per write per node: debug (the purge counters above count them).
      logger.debug({ event: m.event, id: m.id, touched }, 'invalidation applied')
    },
    onGap: (since, touched) => {
      metrics.counters.purges.gap++
      logger.warn({ since, touched }, 'invalidation bus gap: banned everything stored before it')
    }
  })

  const server = http.createServer({
    // What the upstream accepts, minus the room for the fields the cache adds (request-head.ts).
    maxHeaderSize: clientHeadLimit(config),
    requestTimeout: config.CACHE_REQUEST_TIMEOUT_MS,
    headersTimeout: config.CACHE_HEADERS_TIMEOUT_MS,
    keepAliveTimeout: config.CACHE_KEEPALIVE_TIMEOUT_MS,
    // How often node enforces the two timeouts above (its default, 30 s, would let a slowloris linger).
    connectionsCheckingInterval: Math.max(50, Math.min(1000, Math.floor(config.CACHE_HEADERS_TIMEOUT_MS / 2))),
    // Never the lenient parser: it is what lets smuggled requests through.
    insecureHTTPParser: false,
    // recv refuses an HTTP/1.1 request without Host itself, closing the
    // connection like every refusal (node's own 400 would let the requests
    // pipelined behind it through: issue 23).
    requireHostHeader: false
  }, (req, res) => {
    // Requests parsed behind one we rejected for its framing are not the client's to send.
    if (isRejected(req.socket)) { res.destroy(); return }
    // A request the hit front passed on: its connection goes back to the front once this answer is written.
    front?.watch(req.socket, res)
    inTurn(req.socket, res, () => { drive(new Ctx(engine, req, res), 'recv') })
  })
  server.on('checkExpectation', (req: http.IncomingMessage, res: http.ServerResponse) => {
    if (isRejected(req.socket)) { res.destroy(); return }
    inTurn(req.socket, res, () => { refuseExpectation(req.socket, res) })
  })
  // One field more than allowed reaches recv, which refuses it (request-head.ts).
  server.maxHeadersCount = parserFieldCount(config.CACHE_MAX_HEADER_FIELDS)
  // A client that stops reading (or sending) cannot hold a socket forever.
  server.timeout = config.CACHE_IDLE_TIMEOUT_MS

  server.on('clientError', (err: Error, socket: Duplex) => { onClientError(err, socket, { ban: rawBan }) })
  const BAN_RULES = { methods: ['BAN'], versions: ['HTTP/1.1', 'HTTP/1.0'], maxFields: config.CACHE_MAX_HEADER_FIELDS, maxUrlBytes: config.CACHE_MAX_URL_BYTES, maxHeadBytes: config.CACHE_MAX_HEADER_BYTES } as const

  /**
   * node's parser does not know the BAN method, so a BAN arrives here as a
   * parse error carrying its raw bytes. The head is parsed strictly (CRLF
   * only, no folding) and answered with Connection: close.
   */
  function rawBan (raw: Buffer, socket: Duplex): void {
    // The cache's one strict parser (head-parser.ts), linear time; purge.ts authenticates before anything else is read.
    const head = parseStrictHead(raw.toString('latin1'), BAN_RULES)
    if (typeof head === 'string') { rawAnswer(socket, 400, head); return }
    answerInvalidation(purgeDeps(engine), 'BAN', head.url, head.headers).then((a) => {
      let extra = ''
      for (const k in a.headers) extra += `${k}: ${a.headers[k]}\r\n`
      rawAnswer(socket, a.status, a.body, extra, a.type)
    }, () => { rawAnswer(socket, 500, 'internal error\n') })
  }

  // Drops objects past every window they could still be used in, so memory
  // goes back to the LRU's free space instead of waiting for eviction.
  const sweep = setInterval(() => {
    const now = clock.now()
    if (store.sweep !== undefined) store.sweep(now)
    else {
      const dead: string[] = []
      for (const o of store.values()) if (now >= o.freshUntil + policy.keepMs(o)) dead.push(o.key)
      for (const k of dead) store.delete(k)
    }
    log.prune(now)
  }, 5000)
  sweep.unref()

  director.start()

  // The listening socket: the hit front answers plain hits and hands every
  // other connection to `server` (hit-front.ts).
  const front = config.CACHE_HIT_FRONT
    ? createHitFront({
      http: server,
      serve: (req, res) => plainHit(engine, req, res),
      maxHeadBytes: clientHeadLimit(config),
      maxFields: config.CACHE_MAX_HEADER_FIELDS,
      maxUrlBytes: config.CACHE_MAX_URL_BYTES,
      keepAliveTimeoutMs: config.CACHE_KEEPALIVE_TIMEOUT_MS,
      headersTimeoutMs: config.CACHE_HEADERS_TIMEOUT_MS,
      idleTimeoutMs: config.CACHE_IDLE_TIMEOUT_MS
    })
    : undefined
  const listener: net.Server = front?.server ?? server

  let address: AddressInfo | undefined
  return {
    server,
    engine,
    url: () => `http://127.0.0.1:${address?.port ?? 0}`,
    listen (port = config.PORT, host = config.HOST) {
      return new Promise((resolve, reject) => {
        listener.once('error', reject)
        listener.listen(port, host, () => {
          listener.off('error', reject)
          address = listener.address() as AddressInfo
          // node's server starts tracking connections (head and request
          // timeouts, closeIdleConnections) when it starts listening; behind
          // the front it never listens itself, so it is told here.
          if (front !== undefined) server.emit('listening')
          resolve(address)
        })
      })
    },
    async close () {
      clearInterval(sweep)
      unsubscribe()
      await new Promise<void>((resolve) => {
        if (!listener.listening) { resolve(); return }
        // The listener counts every connection it accepted, those handed to node's server included.
        listener.close(() => resolve())
        if (front !== undefined) {
          front.closeConnections()
          // Stops node's connection checks and closes its idle connections; it never listened itself.
          server.close(() => {})
        }
        server.closeIdleConnections()
        // In-flight answers get a moment; then everything goes.
        setTimeout(() => { server.closeAllConnections(); front?.destroyConnections() }, 2000).unref()
      })
      await director.close()
      deps.shared?.lock.close()
      // The app's own store only: an injected one belongs to the caller.
      if (deps.store === undefined) await store.close?.()
    }
  }
}
