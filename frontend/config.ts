/**
 * The frontend's configuration: one TypeBox schema, read from the environment
 * by `loadConfig` (common/config.ts). Every variable carries a description.
 */
import { Type, type Static } from '@sinclair/typebox'
import { CommonEnv, DatabaseEnv, Port, UrlList, loadConfig, list } from '../common/config.js'
import { TrustedProxies, trustedProxyList } from '../common/trusted-proxies.js'
import { CdnIdentityEnv, TAG_FIELDS } from '../common/cdn.js'

export const FrontendEnv = Type.Object({
  ...CommonEnv,
  ...DatabaseEnv,
  PORT: Port('Port the frontend listens on.', 3000),
  DATABASE_READ_URL: Type.Optional(Type.String({
    pattern: '^postgres(ql)?://',
    description: 'Read pool (a replica, or the primary with a SELECT-only role). Defaults to DATABASE_URL; the frontend always opens it read-only.'
  })),
  DATABASE_PRIMARY_READ_URL: Type.Optional(Type.String({
    pattern: '^postgres(ql)?://',
    description: 'Where an author\'s page is read when the read pool has not replayed their write yet: the primary (a SELECT-only role is enough), opened read-only. Defaults to DATABASE_URL; unused when the read pool is the primary.'
  })),
  FRONTEND_PRIMARY_POOL_MAX: Type.Integer({ minimum: 0, maximum: 100, default: 2, description: 'Connections (and concurrent author renders) on the primary for read-your-writes when the replica lags; 0: never read the primary (authors then get the replica\'s page).' }),
  FRONTEND_PRIMARY_QUEUE_MAX: Type.Integer({ minimum: 0, maximum: 100_000, default: 100, description: 'Authors waiting (up to DATABASE_CONNECT_TIMEOUT_MS) for a primary render at most; beyond that they get the replica\'s page instead of piling onto the primary.' }),
  FRONTEND_BUS_WAIT_MS: Type.Integer({ minimum: 0, maximum: 30_000, default: 1000, description: 'How long a cache node\'s refetch (X-Invalidated-After) waits for this frontend to apply the same invalidation; after that the page is rendered fresh and marked no-store.' }),
  BACKEND_URL: UrlList('Backend write services, comma-separated; form posts are spread over them and retried on another one when idempotent.', { default: 'http://127.0.0.1:3001' }),
  FRONTEND_RENDER_CACHE_BYTES: Type.Integer({ minimum: 0, maximum: 8 * 1024 ** 3, default: 64 * 1024 * 1024, description: 'Bytes of rendered pages kept in process (LRU); 0 disables the render cache.' }),
  FRONTEND_SHARED_RENDER_CACHE: Type.Boolean({ default: true, description: 'Use Redis (REDIS_URL) as a shared second-level render cache across frontends.' }),
  FRONTEND_TRUSTED_PROXIES: TrustedProxies('Addresses or CIDRs (comma-separated) whose X-Forwarded-For is believed: the cache nodes and the load balancer in front of them. `none`: trust nobody.', '127.0.0.1,::1'),
  FRONTEND_PUBLIC_ORIGINS: Type.Optional(Type.String({ description: 'Extra origins (comma-separated, e.g. https://hour.example.org) whose form posts are accepted besides the request\'s own host.' })),
  FRONTEND_RYW_WAIT_MS: Type.Integer({ minimum: 0, maximum: 30_000, default: 2000, description: 'How long an author\'s page (?rev=) waits for the read pool to replay their write when the primary cannot serve it (no primary pool, its queue is full, or it is failing over). Otherwise an author never waits: a replica behind the write sends the page to the primary at once.' }),
  FRONTEND_DNS_REFRESH_MS: Type.Integer({ minimum: 0, default: 5000, description: 'How often backend host names are re-resolved; each address becomes its own pool (scale-out without a restart). 0 disables.' }),
  CDN_PROVIDER: CdnIdentityEnv.CDN_PROVIDER,
  FRONTEND_CDN_MAX_AGE: Type.Integer({ minimum: 0, maximum: 86_400, default: 5, description: 'CDN-Cache-Control max-age of pages a write can change (RFC 9213): the CDN in front keeps them this long. Keep it a few seconds unless a purger reaches the CDN (CDN_FLASHCROWD_URLS or the purger\'s provider credentials); then it may be as long as the pages\' s-maxage (300), as npm start and npm run cluster set it.' }),
  FRONTEND_BACKEND_TIMEOUT_MS: Type.Integer({ minimum: 100, maximum: 60_000, default: 9000, description: 'Deadline of a form post\'s write at the backends (all attempts together; then the visitor gets their form back with 503 + Retry-After). Keep it above BACKEND_DB_RETRY_MS (the backends hold writes through a database failover that long) and below the cache\'s CACHE_UPSTREAM_TIMEOUT_MS.' })
})

export type FrontendConfig = Static<typeof FrontendEnv>

export function loadFrontendConfig (env: NodeJS.ProcessEnv = process.env): FrontendConfig {
  return loadConfig(FrontendEnv, env)
}

/** The CDN's tag field where it differs from Surrogate-Key (Cloudflare: Cache-Tag). */
export function cdnTagField (config: Pick<FrontendConfig, 'CDN_PROVIDER'>): string | undefined {
  return config.CDN_PROVIDER === undefined ? undefined : TAG_FIELDS[config.CDN_PROVIDER]
}

export function backendUrls (config: Pick<FrontendConfig, 'BACKEND_URL'>): string[] {
  return list(config.BACKEND_URL)
}

export function trustedProxies (config: Pick<FrontendConfig, 'FRONTEND_TRUSTED_PROXIES'>): string[] {
  return trustedProxyList(config.FRONTEND_TRUSTED_PROXIES)
}

/**
 * The primary for authors' pages (read-your-writes when the replica lags), or
 * undefined when there is none to add: the read pool is the primary already,
 * or FRONTEND_PRIMARY_POOL_MAX is 0.
 */
export function primaryReadUrl (config: Pick<FrontendConfig, 'DATABASE_URL' | 'DATABASE_READ_URL' | 'DATABASE_PRIMARY_READ_URL' | 'FRONTEND_PRIMARY_POOL_MAX'>): string | undefined {
  if (config.FRONTEND_PRIMARY_POOL_MAX === 0) return undefined
  const read = config.DATABASE_READ_URL
  const primary = config.DATABASE_PRIMARY_READ_URL ?? config.DATABASE_URL
  if (read === undefined || primary === undefined || read === primary) return undefined
  return primary
}
