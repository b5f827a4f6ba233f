/**
 * The CDN purger's configuration: one schema, read from the environment.
 * Which CDNs it purges follows from what is set: CDN_FLASHCROWD_URLS (with
 * ADMIN_TOKEN) for flashcrowd edges; CDN_PROVIDER with that provider's
 * credentials for Fastly, Cloudflare or CloudFront. Both may be set.
 */
import { Type, type Static } from '@sinclair/typebox'
import { CommonEnv, ConfigError, DatabaseEnv, Port, loadConfig, list } from '../common/config.js'
import { CdnIdentityEnv, CdnPurgeEnv } from '../common/cdn.js'

const ApiUrl = (description: string, def: string) => Type.String({ pattern: '^https?://[^\\s]+$', default: def, description })
const Secret = (description: string) => Type.Optional(Type.String({ minLength: 1, description }))

export const PurgerEnv = Type.Object({
  HOST: CommonEnv.HOST,
  LOG_LEVEL: CommonEnv.LOG_LEVEL,
  ADMIN_TOKEN: CommonEnv.ADMIN_TOKEN,
  METRICS_TOKEN: CommonEnv.METRICS_TOKEN,
  ...DatabaseEnv,
  PORT: Port('Port of the purger\'s /-/health and /-/metrics.', 3003),
  CDN_PROVIDER: CdnIdentityEnv.CDN_PROVIDER,
  ...CdnPurgeEnv,
  PURGER_FASTLY_API_URL: ApiUrl('Fastly\'s API (a contract server in tests).', 'https://api.fastly.com'),
  PURGER_FASTLY_SERVICE_ID: Secret('Fastly service whose cache is purged (CDN_PROVIDER=fastly).'),
  PURGER_FASTLY_API_TOKEN: Secret('Fastly API token with purge rights (sent as Fastly-Key).'),
  PURGER_FASTLY_SOFT_PURGE: Type.Boolean({ default: true, description: 'Soft purge (Fastly-Soft-Purge: 1): mark pages stale rather than remove them, so Fastly may still serve one where the page allows it (stale-if-error when the tier is down).' }),
  PURGER_FASTLY_REQUESTS_PER_SECOND: Type.Number({ minimum: 0, maximum: 1000, default: 10, description: 'Most purge requests a second to Fastly (each up to 256 keys). 0: no pacing.' }),
  PURGER_CLOUDFLARE_API_URL: ApiUrl('Cloudflare\'s API base (a contract server in tests).', 'https://api.cloudflare.com/client/v4'),
  PURGER_CLOUDFLARE_ZONE_ID: Secret('Cloudflare zone whose cache is purged (CDN_PROVIDER=cloudflare).'),
  PURGER_CLOUDFLARE_API_TOKEN: Secret('Cloudflare API token with the Cache Purge permission.'),
  PURGER_CLOUDFLARE_TAGS_PER_REQUEST: Type.Integer({ minimum: 1, maximum: 1000, default: 30, description: 'Tags in one purge_cache request: your plan\'s per-request limit (30 historically; Cloudflare has raised it for some plans).' }),
  PURGER_CLOUDFLARE_REQUESTS_PER_SECOND: Type.Number({ minimum: 0, maximum: 1000, default: 5, description: 'Most purge requests a second to Cloudflare: stay under your plan\'s purge rate limit (a 429 with Retry-After is honoured anyway). 0: no pacing.' }),
  PURGER_CLOUDFRONT_API_URL: ApiUrl('CloudFront\'s API (a contract server in tests).', 'https://cloudfront.amazonaws.com'),
  PURGER_CLOUDFRONT_DISTRIBUTION_ID: Secret('CloudFront distribution invalidated (CDN_PROVIDER=cloudfront).'),
  PURGER_AWS_ACCESS_KEY_ID: Secret('AWS access key allowed cloudfront:CreateInvalidation on the distribution.'),
  PURGER_AWS_SECRET_ACCESS_KEY: Secret('Its secret key.'),
  PURGER_AWS_SESSION_TOKEN: Secret('Session token, for temporary credentials.'),
  PURGER_CLOUDFRONT_KEYS_PER_REQUEST: Type.Integer({ minimum: 1, maximum: 1000, default: 500, description: 'Keys in one invalidation (each becomes at most two paths; CloudFront allows 3,000 paths in progress).' }),
  PURGER_CLOUDFRONT_REQUESTS_PER_SECOND: Type.Number({ minimum: 0, maximum: 100, default: 1, description: 'Most CreateInvalidation calls a second. 0: no pacing.' }),
  PURGER_CLOUDFRONT_PRICE_PER_PATH: Type.Number({ minimum: 0, default: 0.005, description: 'US dollars per invalidation path beyond the monthly free paths, for the cost metric (AWS list price).' }),
  PURGER_POLL_MS: Type.Integer({ minimum: 10, maximum: 60_000, default: 100, description: 'How often the purger looks for new writes in the outbox (and for due retries): a write reaches the CDN this much after its commit, plus the CDN\'s own time.' }),
  PURGER_SETTLE_MS: Type.Integer({ minimum: 0, maximum: 10_000, default: 50, description: 'How long after the backend published an invalidation to our caches the purger waits before purging the CDN, so the CDN\'s refetch finds our caches already purged.' }),
  PURGER_BATCH_MAX: Type.Integer({ minimum: 1, maximum: 10_000, default: 200, description: 'Jobs (writes\' keys) one round merges and sends.' }),
  PURGER_LEASE_MS: Type.Integer({ minimum: 1000, maximum: 3_600_000, default: 60_000, description: 'How long a claim holds its jobs; a purger that died mid-request loses them to another after this.' }),
  PURGER_RETRY_BASE_MS: Type.Integer({ minimum: 10, maximum: 3_600_000, default: 1000, description: 'First wait after a failed purge (unless the CDN sent Retry-After); doubled per attempt, with jitter.' }),
  PURGER_RETRY_MAX_MS: Type.Integer({ minimum: 10, maximum: 3_600_000, default: 60_000, description: 'Longest wait between two attempts of one job.' }),
  PURGER_REQUEST_TIMEOUT_MS: Type.Integer({ minimum: 100, maximum: 120_000, default: 10_000, description: 'Deadline of one request to a CDN\'s API.' }),
  PURGER_RETAIN_DONE_S: Type.Integer({ minimum: 0, maximum: 30 * 86_400, default: 3600, description: 'Acknowledged jobs are kept this long for inspection, then deleted.' }),
  PURGER_SHUTDOWN_TIMEOUT_MS: Type.Integer({ minimum: 100, maximum: 120_000, default: 10_000, description: 'How long a graceful shutdown waits for purges in flight.' })
})

export type PurgerConfig = Static<typeof PurgerEnv>

/** What the configuration asks to purge: flashcrowd edges, the commercial CDN, or both. */
export function purgeTargets (config: PurgerConfig): string[] {
  const targets: string[] = []
  if (list(config.CDN_FLASHCROWD_URLS).length > 0) targets.push('flashcrowd')
  if (config.CDN_PROVIDER !== undefined && config.CDN_PROVIDER !== 'flashcrowd') targets.push(config.CDN_PROVIDER)
  return targets
}

/** Rules between variables: each target needs its credentials; a purger with no target is a mistake. */
export function checkPurgerConfig (config: PurgerConfig): PurgerConfig {
  const problems: string[] = []
  const need = (names: Array<keyof PurgerConfig>, why: string) => {
    for (const n of names) if (config[n] === undefined) problems.push(`${n}: required ${why}`)
  }
  const targets = purgeTargets(config)
  if (targets.length === 0 && config.CDN_PROVIDER !== 'flashcrowd') problems.push('CDN_FLASHCROWD_URLS or CDN_PROVIDER (flashcrowd with CDN_FLASHCROWD_URLS, cloudflare, fastly, cloudfront): the purger has nothing to purge')
  if (targets.includes('flashcrowd')) need(['ADMIN_TOKEN'], 'to PURGE the edges of CDN_FLASHCROWD_URLS')
  if (config.CDN_PROVIDER === 'flashcrowd' && !targets.includes('flashcrowd')) problems.push('CDN_FLASHCROWD_URLS: required with CDN_PROVIDER=flashcrowd (the edges to purge)')
  if (targets.includes('fastly')) need(['PURGER_FASTLY_SERVICE_ID', 'PURGER_FASTLY_API_TOKEN'], 'with CDN_PROVIDER=fastly')
  if (targets.includes('cloudflare')) need(['PURGER_CLOUDFLARE_ZONE_ID', 'PURGER_CLOUDFLARE_API_TOKEN'], 'with CDN_PROVIDER=cloudflare')
  if (targets.includes('cloudfront')) need(['PURGER_CLOUDFRONT_DISTRIBUTION_ID', 'PURGER_AWS_ACCESS_KEY_ID', 'PURGER_AWS_SECRET_ACCESS_KEY'], 'with CDN_PROVIDER=cloudfront')
  if (problems.length > 0) throw new ConfigError(problems)
  return config
}

export function loadPurgerConfig (env: NodeJS.ProcessEnv = process.env): PurgerConfig {
  return checkPurgerConfig(loadConfig(PurgerEnv, env))
}
