import { escapeXml } from '../html.js'
import type { SitemapEntry } from '../repositories.js'

/** sitemaps.org 0.9; `base` is the site's public origin. */
export function sitemapXml (base: string, entries: SitemapEntry[]): string {
  const parts = ['<?xml version="1.0" encoding="UTF-8"?>\n<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">\n']
  for (const e of entries) {
    parts.push(`<url><loc>${escapeXml(base + e.path)}</loc>${e.updatedAt ? `<lastmod>${e.updatedAt.toISOString()}</lastmod>` : ''}</url>\n`)
  }
  parts.push('</urlset>\n')
  return parts.join('')
}
