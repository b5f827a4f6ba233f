/**
 * The cache role's configuration: one TypeBox schema read from the
 * environment by `loadConfig` (common/config.ts). Shared names come from
 * design §7; everything else is prefixed `CACHE_`.
 */
import { Type, type Static } from '@sinclair/typebox'
import { CommonEnv, ConfigError, Port, UrlList, loadConfig } from '../common/config.js'
import { TrustedProxies } from '../common/trusted-proxies.js'
import { forwardReserve } from './request-head.js'
import { CdnIdentityEnv, cdnIdentity } from '../common/cdn.js'

export const CacheEnv = Type.Object({
  ...CommonEnv,
  PORT: Port('Port the cache listens on.', 8080),
  UPSTREAMS: UrlList('Frontend origins the cache fetches from, comma-separated (e.g. http://127.0.0.1:3000,http://127.0.0.1:3010: the frontends).'),
  CACHE_MAX_BYTES: Type.Integer({ minimum: 1024 * 1024, default: 256 * 1024 * 1024, description: 'Bytes the cache node may hold, all its workers together: stored objects (bodies, headers, keys and URLs) and hit-for-miss markers (evicted beyond that).' }),
  CACHE_MAX_OBJECT_BYTES: Type.Integer({ minimum: 1024, default: 4 * 1024 * 1024, description: 'Responses larger than this are streamed through (passed), never stored.' }),
  CACHE_WORKERS: Type.Integer({ minimum: 0, maximum: 256, default: 0, description: 'Worker processes; 0 means one per CPU core, 1 runs in a single process. Several workers share one store (shared-store.ts) and fetch each key once (node-lock.ts).' }),
  CACHE_STORE_DIR: Type.String({ default: '', description: 'Directory of the store the workers share (CACHE_WORKERS > 1); emptied at start. Empty: a new directory under /dev/shm (or the temporary directory), removed at exit.' }),
  CACHE_DIRECTOR: Type.Union([Type.Literal('round-robin'), Type.Literal('least-connections')], { default: 'round-robin', description: 'How a healthy upstream is chosen for each fetch.' }),
  CACHE_GRACE_SECONDS: Type.Number({ minimum: 0, default: 0, description: 'Opt-in grace: how long past freshness an object the origin did not mark stale-while-revalidate may still be served while one background fetch refreshes it (RFC 9111 §4.2.4 forbids this unless configured). 0, the default: only what the origin grants (stale-while-revalidate, stale-if-error) or a disconnected origin allows stale.' }),
  CACHE_DEFAULT_TTL_SECONDS: Type.Number({ minimum: 0, default: 0, description: 'Freshness for storable responses without explicit or heuristic lifetime (0: RFC behaviour, not fresh).' }),
  CACHE_HIT_FOR_MISS_SECONDS: Type.Number({ minimum: 0, default: 30, description: 'How long an uncacheable answer marks its key so later requests skip the coalescing queue.' }),
  CACHE_COALESCE_MAX_WAITERS: Type.Integer({ minimum: 1, default: 10_000, description: 'Requests that may wait on one in-flight fetch; more get stale content or 503.' }),
  CACHE_COALESCE_TIMEOUT_MS: Type.Integer({ minimum: 10, default: 15_000, description: 'How long a request waits on another request\'s fetch before giving up (stale or 504).' }),
  CACHE_UPSTREAM_TIMEOUT_MS: Type.Integer({ minimum: 10, default: 10_000, description: 'Time to the response headers and between body chunks from an upstream.' }),
  CACHE_UPSTREAM_CONNECTIONS: Type.Integer({ minimum: 1, default: 64, description: 'Keep-alive connections per upstream (undici Pool).' }),
  CACHE_DNS_REFRESH_MS: Type.Integer({ minimum: 0, default: 5000, description: 'How often upstream host names are re-resolved; each address becomes its own upstream (scale-out without a restart). 0 disables.' }),
  CACHE_PROBE_INTERVAL_MS: Type.Integer({ minimum: 0, default: 2000, description: 'Interval of active health probes (GET CACHE_PROBE_PATH) per upstream; 0 disables them.' }),
  CACHE_PROBE_TIMEOUT_MS: Type.Integer({ minimum: 10, default: 1000, description: 'Timeout of one health probe.' }),
  // keepEmpty: an explicitly empty value means "no probes", not "the default" (common/config.ts).
  CACHE_PROBE_PATH: Type.String({ pattern: '^(/[\\x21-\\x7e]*)?$', default: '/-/health', keepEmpty: true, description: 'Path each upstream is probed at. Set it empty (CACHE_PROBE_PATH=) to disable probes. A first probe answered 404 is a warning, not an outage: that upstream is then probed for liveness only (any HTTP answer is up).' }),
  CACHE_PROBE_EXPECT_STATUS: Type.String({ pattern: '^[1-5][0-9]{2}(-[1-5][0-9]{2})?(,[1-5][0-9]{2}(-[1-5][0-9]{2})?)*$', default: '200-399', description: 'Probe answers that mean healthy: status codes and ranges, comma-separated (e.g. 200,204 or 200-299). Anything else, a timeout or no answer is a failed probe; two in a row mark the upstream down.' }),
  CACHE_EJECT_AFTER_ERRORS: Type.Integer({ minimum: 1, default: 3, description: 'Consecutive failed fetches (connection errors, timeouts, 5xx) that eject an upstream.' }),
  CACHE_EJECT_MS: Type.Integer({ minimum: 0, default: 10_000, description: 'How long an ejected upstream is left alone unless a probe succeeds first.' }),
  CACHE_TRUSTED_PROXIES: TrustedProxies('Load balancers (addresses or CIDRs, comma-separated) whose X-Forwarded-For is believed; `none`: the cache is the edge and its socket peer is the visitor.', 'none'),
  CACHE_MAX_BODY_BYTES: Type.Integer({ minimum: 0, default: 1024 * 1024, description: 'Largest request body forwarded upstream (413 beyond).' }),
  CACHE_MAX_INFLIGHT_BODY_BYTES: Type.Integer({ minimum: 0, default: 32 * 1024 * 1024, description: 'Request body bytes all passed requests together may hold in memory per worker (at least CACHE_MAX_BODY_BYTES); a body that would go beyond is answered 503 with Retry-After, unread, and the connection closed.' }),
  CACHE_MAX_FETCH_BUFFER_BYTES: Type.Integer({ minimum: 0, default: 16 * 1024 * 1024, description: 'Bytes of upstream answers all fetches together may hold in memory per worker while reading them (a body read to be stored, the first part of one passed on) until it is stored or its client has it (at least CACHE_MAX_OBJECT_BYTES). An answer that would go beyond is passed through at its client\'s pace, not stored.' }),
  CACHE_MAX_HEADER_BYTES: Type.Integer({ minimum: 4096, default: 16 * 1024, description: 'Largest request head the upstreams accept (node counts the target, field names and values; its default is 16 KiB). The cache accepts heads up to this minus the room its own fields take (1 KiB plus 4 bytes per field allowed), so what it forwards always fits; larger gets 431.' }),
  CACHE_MAX_HEADER_FIELDS: Type.Integer({ minimum: 8, maximum: 1000, default: 100, description: 'Most header fields a request may carry; more gets 431 before anything is forwarded (node frames a message with all its fields but shows only the first 2,000).' }),
  CACHE_MAX_URL_BYTES: Type.Integer({ minimum: 64, default: 8192, description: 'Longest request target; longer gets 414.' }),
  CACHE_REQUEST_TIMEOUT_MS: Type.Integer({ minimum: 100, default: 30_000, description: 'Time a client has to send its whole request.' }),
  CACHE_HEADERS_TIMEOUT_MS: Type.Integer({ minimum: 100, default: 10_000, description: 'Time a client has to send its request head (slowloris guard).' }),
  CACHE_IDLE_TIMEOUT_MS: Type.Integer({ minimum: 100, default: 30_000, description: 'A socket with no progress for this long (e.g. a client that stops reading) is closed.' }),
  CACHE_SEND_TIMEOUT_MS: Type.Integer({ minimum: 100, default: 10_000, description: 'A streamed (not stored) answer whose client accepts no bytes for this long is abandoned and its upstream connection released.' }),
  CACHE_KEEPALIVE_TIMEOUT_MS: Type.Integer({ minimum: 100, default: 5000, description: 'Idle keep-alive client connections are closed after this.' }),
  ...CdnIdentityEnv,
  CACHE_EDGE: Type.Boolean({ default: false, description: 'This node is a CDN edge in front of a tier (its UPSTREAMS are the tier\'s caches): it obeys CDN-Cache-Control (RFC 9213 §3) instead of Cache-Control. false: it obeys Flashcrowd-Cache-Control (aimed at this project\'s caches) and passes CDN-Cache-Control on untouched.' }),
  CACHE_DELIVER_SURROGATE_KEY: Type.Boolean({ default: false, description: 'Pass each page\'s Surrogate-Key on to the client, for a CDN in front that purges by it (it removes the field before the visitor). Always on with CDN_PROVIDER=fastly or flashcrowd.' }),
  CACHE_HIT_FRONT: Type.Boolean({ default: true, description: 'Answer plain hits (a fresh stored page for a simple GET/HEAD) straight from the listening socket, before node\'s HTTP server (hit-front.ts); other requests go through node\'s server (a connection that sends one outside the simple form stays there). false: every request does.' })
})

export type CacheConfig = Static<typeof CacheEnv>

export function loadCacheConfig (env: NodeJS.ProcessEnv = process.env): CacheConfig {
  return checkCacheConfig(loadConfig(CacheEnv, env))
}

/** Rules between variables that the schema cannot express; throws a ConfigError naming them. */
export function checkCacheConfig (config: CacheConfig): CacheConfig {
  const problems: string[] = []
  const reserve = forwardReserve(config.CACHE_MAX_HEADER_FIELDS)
  if (config.CACHE_MAX_HEADER_BYTES - reserve < 2048) {
    problems.push(`CACHE_MAX_HEADER_BYTES: must leave at least 2048 bytes for the client's head after the ${reserve} bytes the cache's own fields may take with CACHE_MAX_HEADER_FIELDS=${config.CACHE_MAX_HEADER_FIELDS} (got ${config.CACHE_MAX_HEADER_BYTES})`)
  }
  if (config.CACHE_MAX_INFLIGHT_BODY_BYTES < config.CACHE_MAX_BODY_BYTES) {
    problems.push(`CACHE_MAX_INFLIGHT_BODY_BYTES: must be at least CACHE_MAX_BODY_BYTES (${config.CACHE_MAX_BODY_BYTES}), or the largest allowed body could never pass (got ${config.CACHE_MAX_INFLIGHT_BODY_BYTES})`)
  }
  try { cdnIdentity(config) } catch (err) { problems.push((err as Error).message) }
  if (config.CACHE_MAX_FETCH_BUFFER_BYTES < config.CACHE_MAX_OBJECT_BYTES) {
    problems.push(`CACHE_MAX_FETCH_BUFFER_BYTES: must be at least CACHE_MAX_OBJECT_BYTES (${config.CACHE_MAX_OBJECT_BYTES}), or the largest storable answer could never be stored (got ${config.CACHE_MAX_FETCH_BUFFER_BYTES})`)
  }
  if (problems.length > 0) throw new ConfigError(problems)
  return config
}
