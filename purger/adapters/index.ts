/** The adapters the configuration asks for (config.ts `purgeTargets`). */
import { sql } from 'kysely'
import { list } from '../../common/config.js'
import type { DatabaseHandle } from '../../common/db.js'
import type { CdnAdapter } from '../adapter.js'
import { purgeTargets, type PurgerConfig } from '../config.js'
import type { SlugLookup } from '../key-paths.js'
import { cloudflareAdapter } from './cloudflare.js'
import { cloudfrontAdapter } from './cloudfront.js'
import { fastlyAdapter } from './fastly.js'
import { flashcrowdAdapter } from './flashcrowd.js'

/** Slugs from the primary, for CloudFront's paths. */
export function databaseSlugs (database: DatabaseHandle): SlugLookup {
  const lookup = (table: 'tutorials' | 'news') => async (ids: number[]) => {
    const { rows } = await sql<{ id: number, slug: string }>`select id, slug from ${sql.table(table)} where id = any(${ids})`.execute(database.db)
    return new Map(rows.map((r) => [Number(r.id), r.slug]))
  }
  return { tutorials: lookup('tutorials'), news: lookup('news') }
}

export function createAdapters (config: PurgerConfig, database: DatabaseHandle): CdnAdapter[] {
  const timeoutMs = config.PURGER_REQUEST_TIMEOUT_MS
  return purgeTargets(config).map((target): CdnAdapter => {
    switch (target) {
      case 'flashcrowd':
        return flashcrowdAdapter({ urls: list(config.CDN_FLASHCROWD_URLS), token: config.ADMIN_TOKEN!, timeoutMs })
      case 'fastly':
        return fastlyAdapter({ apiUrl: config.PURGER_FASTLY_API_URL, serviceId: config.PURGER_FASTLY_SERVICE_ID!, token: config.PURGER_FASTLY_API_TOKEN!, soft: config.PURGER_FASTLY_SOFT_PURGE, timeoutMs, requestsPerSecond: config.PURGER_FASTLY_REQUESTS_PER_SECOND })
      case 'cloudflare':
        return cloudflareAdapter({ apiUrl: config.PURGER_CLOUDFLARE_API_URL, zoneId: config.PURGER_CLOUDFLARE_ZONE_ID!, token: config.PURGER_CLOUDFLARE_API_TOKEN!, tagsPerRequest: config.PURGER_CLOUDFLARE_TAGS_PER_REQUEST, requestsPerSecond: config.PURGER_CLOUDFLARE_REQUESTS_PER_SECOND, timeoutMs })
      default:
        return cloudfrontAdapter({
          apiUrl: config.PURGER_CLOUDFRONT_API_URL,
          distributionId: config.PURGER_CLOUDFRONT_DISTRIBUTION_ID!,
          credentials: { accessKeyId: config.PURGER_AWS_ACCESS_KEY_ID!, secretAccessKey: config.PURGER_AWS_SECRET_ACCESS_KEY!, ...(config.PURGER_AWS_SESSION_TOKEN ? { sessionToken: config.PURGER_AWS_SESSION_TOKEN } : {}) },
          keysPerRequest: config.PURGER_CLOUDFRONT_KEYS_PER_REQUEST,
          requestsPerSecond: config.PURGER_CLOUDFRONT_REQUESTS_PER_SECOND,
          timeoutMs,
          slugs: databaseSlugs(database)
        })
    }
  })
}
