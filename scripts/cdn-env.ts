/**
 * What `npm start` and `npm run cluster` hand each role when a CDN is in
 * front (CDN_PROVIDER, CDN_TRUSTED_RANGES, CDN_FLASHCROWD_URLS; docs/cdn.md):
 * the caches believe the CDN's client field from its ranges; the frontends
 * give the CDN long page lifetimes only when a purger reaches it; a purger
 * runs for flashcrowd edges, or for a commercial CDN whose credentials
 * (PURGER_*) are in the environment.
 */
import { list } from '../common/config.js'
import { POLICIES } from '../frontend/cache-headers.js'

export interface CdnSettings {
  CDN_PROVIDER?: string
  CDN_TRUSTED_RANGES?: string
  CDN_FLASHCROWD_URLS?: string
}

/** The PURGER_* variables of the purger's credentials and API addresses, passed through from the environment. */
function purgerVariables (env: NodeJS.ProcessEnv): Record<string, string> {
  return Object.fromEntries(Object.entries(env).filter((e): e is [string, string] => e[0].startsWith('PURGER_') && e[1] !== undefined && e[1] !== ''))
}

const CREDENTIALS: Record<string, string[]> = {
  fastly: ['PURGER_FASTLY_SERVICE_ID', 'PURGER_FASTLY_API_TOKEN'],
  cloudflare: ['PURGER_CLOUDFLARE_ZONE_ID', 'PURGER_CLOUDFLARE_API_TOKEN'],
  cloudfront: ['PURGER_CLOUDFRONT_DISTRIBUTION_ID', 'PURGER_AWS_ACCESS_KEY_ID', 'PURGER_AWS_SECRET_ACCESS_KEY']
}

export function cdnEnv (config: CdnSettings, env: NodeJS.ProcessEnv = process.env) {
  const provider = config.CDN_PROVIDER
  const edges = list(config.CDN_FLASHCROWD_URLS)
  const purgerVars = purgerVariables(env)
  const commercialPurge = provider !== undefined && provider !== 'flashcrowd' && CREDENTIALS[provider].every((n) => purgerVars[n] !== undefined)
  const purged = edges.length > 0 || commercialPurge
  const cache: Record<string, string> = {
    ...(provider ? { CDN_PROVIDER: provider } : {}),
    ...(config.CDN_TRUSTED_RANGES ? { CDN_TRUSTED_RANGES: config.CDN_TRUSTED_RANGES } : {})
  }
  const frontend: Record<string, string> = {
    ...(provider ? { CDN_PROVIDER: provider } : {}),
    // Purged: the CDN may keep pages as long as our caches; otherwise the frontend's few seconds.
    ...(purged ? { FRONTEND_CDN_MAX_AGE: String(POLICIES.page.sMaxAge) } : {})
  }
  const purger: Record<string, string> | undefined = purged
    ? { ...purgerVars, ...(edges.length > 0 ? { CDN_FLASHCROWD_URLS: edges.join(',') } : {}), ...(commercialPurge ? { CDN_PROVIDER: provider! } : {}) }
    : undefined
  const parts: string[] = []
  if (provider) parts.push(`${provider} in front; its client field believed from ${config.CDN_TRUSTED_RANGES ? 'CDN_TRUSTED_RANGES' : 'its shipped ranges'}`)
  if (edges.length > 0) parts.push(`purging ${edges.length} flashcrowd edge${edges.length > 1 ? 's' : ''}`)
  if (commercialPurge) parts.push(`purging ${provider} through its API`)
  else if (provider && provider !== 'flashcrowd') parts.push(`no ${provider} credentials (${CREDENTIALS[provider].join(', ')}): pages get ${'a few seconds'} at the CDN`)
  return { cache, frontend, purger, summary: parts.join('; ') }
}
