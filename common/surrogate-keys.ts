/**
 * The surrogate-key vocabulary shared by the backend (which names the keys a
 * write touches in its outbox row), the frontend (which tags each page with
 * the keys it shows) and the cache (which purges by them). One place, so the
 * three can never drift apart.
 */
export const SurrogateKeys = {
  home: 'home',
  tutorials: 'tutorials',
  tutorial: (id: number | string) => `tutorial:${id}`,
  news: 'news',
  article: (id: number | string) => `news:${id}`,
  events: 'events',
  counter: 'counter',
  certificate: (id: number | string) => `certificate:${id}`,
  sitemap: 'sitemap',
  /** Every page: `PURGE` with `Surrogate-Key: site` empties every cache at once. */
  site: 'site'
} as const

/** A surrogate key is a short token: no spaces (the header is space-separated), printable ASCII. */
export const SURROGATE_KEY_PATTERN = /^[A-Za-z0-9:_.-]{1,128}$/

export function formatSurrogateKeys (keys: Iterable<string>): string {
  return [...new Set(keys)].join(' ')
}

export function parseSurrogateKeys (header: string | undefined | null): string[] {
  if (!header) return []
  return [...new Set(header.split(/\s+/).filter((k) => SURROGATE_KEY_PATTERN.test(k)))]
}
