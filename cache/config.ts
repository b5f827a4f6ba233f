/**
 * The cache role's configuration: one TypeBox schema read from the
 * environment by `loadConfig` (common/config.ts). Shared names come from
 * design §7; everything else is prefixed `CACHE_`.
 */
import { Type, type Static } from '@sinclair/typebox'
import { CommonEnv, Port, UrlList, loadConfig } from '../common/config.js'
import { TrustedProxies } from '../common/trusted-proxies.js'

export const CacheEnv = Type.Object({
  ...CommonEnv,
  PORT: Port('Port the cache listens on.', 8080),
  UPSTREAMS: UrlList('Frontend origins the cache fetches from, comma-separated (e.g. http://127.0.0.1:3001,http://127.0.0.1:3002).'),
  CACHE_MAX_BYTES: Type.Integer({ minimum: 1024 * 1024, default: 256 * 1024 * 1024, description: 'Bytes the cache may hold per worker: stored objects (bodies, headers, keys and URLs) and hit-for-miss markers (LRU beyond that).' }),
  CACHE_MAX_OBJECT_BYTES: Type.Integer({ minimum: 1024, default: 4 * 1024 * 1024, description: 'Responses larger than this are streamed through (passed), never stored.' }),
  CACHE_WORKERS: Type.Integer({ minimum: 0, maximum: 256, default: 0, description: 'Worker processes; 0 means one per CPU core, 1 runs in a single process.' }),
  CACHE_DIRECTOR: Type.Union([Type.Literal('round-robin'), Type.Literal('least-connections')], { default: 'round-robin', description: 'How a healthy upstream is chosen for each fetch.' }),
  CACHE_GRACE_SECONDS: Type.Number({ minimum: 0, default: 0, description: 'Opt-in grace: how long past freshness an object the origin did not mark stale-while-revalidate may still be served while one background fetch refreshes it (RFC 9111 §4.2.4 forbids this unless configured). 0, the default: only what the origin grants (stale-while-revalidate, stale-if-error) or a disconnected origin allows stale.' }),
  CACHE_DEFAULT_TTL_SECONDS: Type.Number({ minimum: 0, default: 0, description: 'Freshness for storable responses without explicit or heuristic lifetime (0: RFC behaviour, not fresh).' }),
  CACHE_HIT_FOR_MISS_SECONDS: Type.Number({ minimum: 0, default: 30, description: 'How long an uncacheable answer marks its key so later requests skip the coalescing queue.' }),
  CACHE_COALESCE_MAX_WAITERS: Type.Integer({ minimum: 1, default: 10_000, description: 'Requests that may wait on one in-flight fetch; more get stale content or 503.' }),
  CACHE_COALESCE_TIMEOUT_MS: Type.Integer({ minimum: 10, default: 15_000, description: 'How long a request waits on another request\'s fetch before giving up (stale or 504).' }),
  CACHE_UPSTREAM_TIMEOUT_MS: Type.Integer({ minimum: 10, default: 10_000, description: 'Time to the response headers and between body chunks from an upstream.' }),
  CACHE_UPSTREAM_CONNECTIONS: Type.Integer({ minimum: 1, default: 64, description: 'Keep-alive connections per upstream (undici Pool).' }),
  CACHE_DNS_REFRESH_MS: Type.Integer({ minimum: 0, default: 5000, description: 'How often upstream host names are re-resolved; each address becomes its own upstream (scale-out without a restart). 0 disables.' }),
  CACHE_PROBE_INTERVAL_MS: Type.Integer({ minimum: 0, default: 2000, description: 'Interval of active health probes (GET /-/health) per upstream; 0 disables them.' }),
  CACHE_PROBE_TIMEOUT_MS: Type.Integer({ minimum: 10, default: 1000, description: 'Timeout of one health probe.' }),
  CACHE_EJECT_AFTER_ERRORS: Type.Integer({ minimum: 1, default: 3, description: 'Consecutive failed fetches (connection errors, timeouts, 5xx) that eject an upstream.' }),
  CACHE_EJECT_MS: Type.Integer({ minimum: 0, default: 10_000, description: 'How long an ejected upstream is left alone unless a probe succeeds first.' }),
  CACHE_TRUSTED_PROXIES: TrustedProxies('Load balancers (addresses or CIDRs, comma-separated) whose X-Forwarded-For is believed; `none`: the cache is the edge and its socket peer is the visitor.', 'none'),
  CACHE_MAX_BODY_BYTES: Type.Integer({ minimum: 0, default: 1024 * 1024, description: 'Largest request body forwarded upstream (413 beyond).' }),
  CACHE_MAX_HEADER_BYTES: Type.Integer({ minimum: 1024, default: 16 * 1024, description: 'Largest request head (request line and headers); larger gets 431.' }),
  CACHE_MAX_URL_BYTES: Type.Integer({ minimum: 64, default: 8192, description: 'Longest request target; longer gets 414.' }),
  CACHE_REQUEST_TIMEOUT_MS: Type.Integer({ minimum: 100, default: 30_000, description: 'Time a client has to send its whole request.' }),
  CACHE_HEADERS_TIMEOUT_MS: Type.Integer({ minimum: 100, default: 10_000, description: 'Time a client has to send its request head (slowloris guard).' }),
  CACHE_IDLE_TIMEOUT_MS: Type.Integer({ minimum: 100, default: 30_000, description: 'A socket with no progress for this long (e.g. a client that stops reading) is closed.' }),
  CACHE_KEEPALIVE_TIMEOUT_MS: Type.Integer({ minimum: 100, default: 5000, description: 'Idle keep-alive client connections are closed after this.' })
})

export type CacheConfig = Static<typeof CacheEnv>

export function loadCacheConfig (env: NodeJS.ProcessEnv = process.env): CacheConfig {
  return loadConfig(CacheEnv, env)
}
