/**
 * CloudFront has no tags: it invalidates paths. Each surrogate key
 * (common/surrogate-keys.ts) maps to the paths of the pages that carry it;
 * a key naming a row by id needs its slug, read from the database. What
 * cannot be mapped (an unknown key, a row gone) becomes `/*`, which
 * invalidates everything: never less than the write touched. CloudFront
 * bills each path (a wildcard counts as one), so the count is reported.
 */
import { SurrogateKeys } from '../common/surrogate-keys.js'

/** Slugs by id, from the primary (the row was just written there). */
export interface SlugLookup {
  tutorials (ids: number[]): Promise<Map<number, string>>
  news (ids: number[]): Promise<Map<number, string>>
}

const EVERYTHING = '/*'
const TUTORIAL = SurrogateKeys.tutorial('')
const ARTICLE = SurrogateKeys.article('')
const CERTIFICATE = SurrogateKeys.certificate('')

/** Fixed paths of the keys that name no row. Lists carry their query forms (`?page=`) too. */
const FIXED: Record<string, string[]> = {
  [SurrogateKeys.home]: ['/', '/counter.json'],
  [SurrogateKeys.tutorials]: ['/tutorials', '/tutorials?*'],
  [SurrogateKeys.news]: ['/news', '/news?*'],
  [SurrogateKeys.events]: ['/events*'],
  [SurrogateKeys.counter]: ['/counter.json', '/'],
  [SurrogateKeys.sitemap]: ['/sitemap.xml'],
  [SurrogateKeys.site]: [EVERYTHING]
}

const idOf = (key: string, prefix: string): number | undefined => {
  if (!key.startsWith(prefix)) return undefined
  const id = Number(key.slice(prefix.length))
  return Number.isSafeInteger(id) && id > 0 ? id : undefined
}

/** The paths to invalidate for `keys`, deduplicated; just `/*` when any key needs everything. */
export async function pathsForKeys (keys: string[], slugs: SlugLookup): Promise<string[]> {
  const paths = new Set<string>()
  const tutorialIds: number[] = []
  const newsIds: number[] = []
  for (const key of keys) {
    const fixed = FIXED[key]
    if (fixed) { for (const p of fixed) paths.add(p); continue }
    const tutorial = idOf(key, TUTORIAL)
    if (tutorial !== undefined) { tutorialIds.push(tutorial); continue }
    const article = idOf(key, ARTICLE)
    if (article !== undefined) { newsIds.push(article); continue }
    const certificate = key.startsWith(CERTIFICATE) ? key.slice(CERTIFICATE.length) : undefined
    if (certificate !== undefined && /^[A-Za-z0-9_-]+$/.test(certificate)) { paths.add(`/certificates/${certificate}`); continue }
    paths.add(EVERYTHING)
  }
  if (paths.has(EVERYTHING)) return [EVERYTHING]
  const [tutorials, news] = await Promise.all([
    tutorialIds.length > 0 ? slugs.tutorials(tutorialIds) : new Map<number, string>(),
    newsIds.length > 0 ? slugs.news(newsIds) : new Map<number, string>()
  ])
  for (const id of tutorialIds) {
    const slug = tutorials.get(id)
    if (slug === undefined) return [EVERYTHING]
    paths.add(`/tutorials/${slug}`)
  }
  for (const id of newsIds) {
    const slug = news.get(id)
    if (slug === undefined) return [EVERYTHING]
    // The article and its pages of comments.
    paths.add(`/news/${slug}`)
    paths.add(`/news/${slug}?*`)
  }
  return [...paths]
}
