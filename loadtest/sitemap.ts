// Reads /sitemap.xml (sitemaps.org protocol) and turns its absolute <loc> URLs
// into paths on the base URL under test: a sitemap generated behind a proxy
// names the public origin, but the load goes wherever --url points.

export interface SitemapUrl { loc: string, priority?: number }
export interface ParsedSitemap { urls: SitemapUrl[], sitemaps: string[] }

const MAX_CHILD_SITEMAPS = 50
const MAX_URLS = 50_000 // the protocol's own per-file limit

function decodeXml (s: string): string {
  const t = s.trim()
  const cdata = /^<!\[CDATA\[([\s\S]*)\]\]>$/.exec(t)
  if (cdata) return cdata[1].trim()
  return t.replace(/&(#x[0-9a-f]+|#\d+|amp|lt|gt|quot|apos);/gi, (_, e: string) => {
    const k = e.toLowerCase()
    if (k === 'amp') return '&'
    if (k === 'lt') return '<'
    if (k === 'gt') return '>'
    if (k === 'quot') return '"'
    if (k === 'apos') return "'"
    const code = k.startsWith('#x') ? parseInt(k.slice(2), 16) : parseInt(k.slice(1), 10)
    return String.fromCodePoint(code)
  })
}

function tag (block: string, name: string): string | undefined {
  const m = new RegExp(`<(?:[\\w-]+:)?${name}\\b[^>]*>([\\s\\S]*?)</(?:[\\w-]+:)?${name}>`, 'i').exec(block)
  return m ? decodeXml(m[1]) : undefined
}

/** Parses a <urlset> or a <sitemapindex> document. */
export function parseSitemap (xml: string): ParsedSitemap {
  const urls: SitemapUrl[] = []
  const sitemaps: string[] = []
  for (const m of xml.matchAll(/<(?:[\w-]+:)?url\b[^>]*>([\s\S]*?)<\/(?:[\w-]+:)?url>/gi)) {
    const loc = tag(m[1], 'loc')
    if (!loc) continue
    const p = tag(m[1], 'priority')
    const priority = p === undefined ? undefined : Number(p)
    urls.push(priority !== undefined && Number.isFinite(priority) ? { loc, priority } : { loc })
    if (urls.length >= MAX_URLS) break
  }
  for (const m of xml.matchAll(/<(?:[\w-]+:)?sitemap\b[^>]*>([\s\S]*?)<\/(?:[\w-]+:)?sitemap>/gi)) {
    const loc = tag(m[1], 'loc')
    if (loc) sitemaps.push(loc)
  }
  return { urls, sitemaps }
}

/** Path + query of loc, to be requested on the base URL (origin rewritten). */
export function rewriteToBase (loc: string, base: string): string {
  const u = new URL(loc, base)
  const b = new URL(base)
  // keep a base path prefix ("https://host/site/") if the tier is mounted under one
  const prefix = b.pathname.replace(/\/$/, '')
  const path = u.pathname + u.search
  return prefix && !path.startsWith(prefix + '/') && path !== prefix ? prefix + path : path
}

/** Well-known pages first, in this order: home and the news index get the most traffic. */
const HEAD_PAGES = ['/', '/news', '/tutorials', '/events']

/**
 * Orders paths by expected popularity (rank 1 first) for the Zipf mix: home,
 * news index, tutorials index, events, then by sitemap <priority> (higher
 * first), then in sitemap order. Duplicates are dropped.
 */
export function rankPages (entries: ReadonlyArray<{ path: string, priority?: number }>): string[] {
  const seen = new Set<string>()
  const uniq: Array<{ path: string, priority: number, i: number }> = []
  entries.forEach((e, i) => {
    if (seen.has(e.path)) return
    seen.add(e.path)
    uniq.push({ path: e.path, priority: e.priority ?? 0.5, i })
  })
  const headRank = (p: string): number => {
    const k = HEAD_PAGES.indexOf(p.replace(/(.)\/$/, '$1'))
    return k === -1 ? HEAD_PAGES.length : k
  }
  uniq.sort((a, b) => headRank(a.path) - headRank(b.path) || b.priority - a.priority || a.i - b.i)
  return uniq.map(e => e.path)
}

export interface LoadSitemapOptions {
  timeoutMs?: number
  headers?: Record<string, string>
}

export interface SitemapPage { path: string, priority?: number }

async function fetchText (url: string, options: LoadSitemapOptions): Promise<string> {
  const res = await fetch(url, {
    headers: { accept: 'application/xml,text/xml;q=0.9,*/*;q=0.1', 'user-agent': 'flashcrowd-loadtest', ...options.headers },
    signal: AbortSignal.timeout(options.timeoutMs ?? 15_000),
    redirect: 'follow'
  })
  const text = await res.text()
  if (!res.ok) throw new Error(`GET ${url} answered ${res.status}`)
  return text
}

/**
 * Fetches base/sitemap.xml (following one level of <sitemapindex>) and
 * returns the pages as paths on base, in document order.
 */
export async function loadSitemap (base: string, options: LoadSitemapOptions = {}): Promise<SitemapPage[]> {
  const root = new URL('sitemap.xml', base.endsWith('/') ? base : base + '/').toString()
  let doc: ParsedSitemap
  try {
    doc = parseSitemap(await fetchText(root, options))
  } catch (err) {
    throw new Error(`cannot read the sitemap at ${root}: ${(err as Error).message}`)
  }
  const pages: SitemapPage[] = doc.urls.map(u => ({ path: rewriteToBase(u.loc, base), priority: u.priority }))
  for (const child of doc.sitemaps.slice(0, MAX_CHILD_SITEMAPS)) {
    const url = new URL(rewriteToBase(child, base), base).toString()
    const sub = parseSitemap(await fetchText(url, options))
    for (const u of sub.urls) {
      if (pages.length >= MAX_URLS) break
      pages.push({ path: rewriteToBase(u.loc, base), priority: u.priority })
    }
  }
  if (pages.length === 0) throw new Error(`the sitemap at ${root} lists no pages`)
  return pages
}
