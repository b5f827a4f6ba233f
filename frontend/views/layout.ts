/**
 * The page shell every HTML answer shares: header with navigation, main
 * content, footer. No inline scripts or styles and no event handlers, so the
 * Content-Security-Policy can forbid them all.
 */
import { html, type Html } from '../html.js'

export interface AssetUrls {
  /** Public URL of an asset by its source name (`site.css` → `/assets/site.3f2a….css`). */
  url (name: string): string
}

export interface LayoutOptions {
  title: string
  description?: string
  /** Which nav item is current. */
  section?: 'home' | 'tutorials' | 'news' | 'events'
  /** Extra scripts by asset name (deferred). */
  scripts?: string[]
  canonicalPath?: string
  noindex?: boolean
}

const SITE = 'Hour of Code'
const NAV: Array<[NonNullable<LayoutOptions['section']>, string, string]> = [
  ['home', '/', 'Home'],
  ['tutorials', '/tutorials', 'Tutorials'],
  ['news', '/news', 'News'],
  ['events', '/events', 'Events']
]

export function layout (assets: AssetUrls, options: LayoutOptions, content: Html): Html {
  const title = options.title === SITE ? SITE : `${options.title} · ${SITE}`
  return html`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${title}</title>
<meta name="description" content="${options.description ?? 'One hour of coding for every student: tutorials, news and events near you.'}">
${options.noindex ? html`<meta name="robots" content="noindex">` : ''}
${options.canonicalPath ? html`<link rel="canonical" href="${options.canonicalPath}">` : ''}
<link rel="stylesheet" href="${assets.url('site.css')}">
<link rel="icon" href="${assets.url('favicon.svg')}" type="image/svg+xml">
${(options.scripts ?? []).map((s) => html`<script src="${assets.url(s)}" defer></script>`)}
</head>
<body>
<a class="skip-link" href="#main">Skip to content</a>
<header class="site-header">
  <div class="wrap header-inner">
    <a class="brand" href="/"><img src="${assets.url('favicon.svg')}" alt="" width="32" height="32"><span>Hour&nbsp;of&nbsp;Code</span></a>
    <nav aria-label="Main">
      <ul class="nav">
        ${NAV.map(([id, href, label]) => html`<li><a href="${href}"${options.section === id ? html` aria-current="page"` : ''}>${label}</a></li>`)}
        <li><a class="button button-small" href="/events/new">Host an event</a></li>
      </ul>
    </nav>
  </div>
</header>
<main id="main" class="wrap">
${content}
</main>
<footer class="site-footer">
  <div class="wrap footer-inner">
    <p><strong>Hour of Code</strong> — one hour of computer science for every student, in every school.</p>
    <p><a href="/tutorials">Tutorials</a> · <a href="/news">News</a> · <a href="/events">Events</a> · <a href="/sitemap.xml">Sitemap</a></p>
  </div>
</footer>
</body>
</html>
`
}
