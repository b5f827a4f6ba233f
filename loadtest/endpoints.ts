// Endpoint names group requests in the report ("/news/:slug", "POST /events").
// Grouping by route pattern rather than URL keeps the table to a dozen rows
// however many articles the sitemap lists, and lets thresholds name a route.

interface Route { pattern: string, re: RegExp }

const GET_ROUTES: Route[] = [
  { pattern: '/', re: /^\/$/ },
  { pattern: '/tutorials', re: /^\/tutorials\/?$/ },
  { pattern: '/tutorials/:slug', re: /^\/tutorials\/[^/]+\/?$/ },
  { pattern: '/news', re: /^\/news\/?$/ },
  { pattern: '/news/:slug', re: /^\/news\/[^/]+\/?$/ },
  { pattern: '/events', re: /^\/events\/?$/ },
  { pattern: '/events/new', re: /^\/events\/new\/?$/ },
  { pattern: '/certificates/:id', re: /^\/certificates\/[^/]+\/?$/ },
  { pattern: '/sitemap.xml', re: /^\/sitemap\.xml$/ },
  { pattern: '/assets/*', re: /^\/assets\// }
]

const POST_ROUTES: Route[] = [
  { pattern: '/news/:slug/comments', re: /^\/news\/[^/]+\/comments\/?$/ },
  { pattern: '/events', re: /^\/events\/?$/ },
  { pattern: '/tutorials/:slug/done', re: /^\/tutorials\/[^/]+\/done\/?$/ },
  // the backend's write API, for a run straight at a backend
  { pattern: '/v1/comments', re: /^\/v1\/comments\/?$/ },
  { pattern: '/v1/events', re: /^\/v1\/events\/?$/ },
  { pattern: '/v1/completions', re: /^\/v1\/completions\/?$/ }
]

/**
 * Route pattern of a request: GET/HEAD requests are named by their pattern
 * alone ("/news/:slug"), other methods are prefixed ("POST /events").
 * Unknown paths fall back to their first segment ("/about/*").
 */
export function endpointOf (method: string, rawPath: string): string {
  const path = rawPath.split(/[?#]/, 1)[0] || '/'
  const m = method.toUpperCase()
  const read = m === 'GET' || m === 'HEAD'
  const routes = read ? GET_ROUTES : POST_ROUTES
  let name: string | undefined
  for (const r of routes) {
    if (r.re.test(path)) { name = r.pattern; break }
  }
  if (name === undefined) {
    const segs = path.split('/').filter(Boolean)
    name = segs.length === 0 ? '/' : segs.length === 1 ? `/${segs[0]}` : `/${segs[0]}/*`
  }
  return read ? name : `${m} ${name}`
}

export function isReadMethod (method: string): boolean {
  const m = method.toUpperCase()
  return m === 'GET' || m === 'HEAD'
}
