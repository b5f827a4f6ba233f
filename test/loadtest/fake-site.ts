// A small stand-in for the flashcrowd tier, so the load-test tool is tested
// on its own: a sitemap (absolute URLs on a public origin, as generated behind
// a proxy), a few pages, the three form endpoints with the real field names
// and validation, an optional cache imitation (X-Cache + Cache-Status), and
// counters of everything it saw.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'

export interface FakeSiteOptions {
  /** answer with X-Cache/Cache-Status like the cache layer (default true) */
  cache?: boolean
  /** paths answered with this status instead of the page */
  failPaths?: Record<string, number>
  /** public origin written in the sitemap */
  publicOrigin?: string
  news?: number
  tutorials?: number
  /** extra latency per request, ms */
  delayMs?: number
  /**
   * A site that falls over above a known rate: once two whole seconds in a
   * row (of its own clock) brought more than `rate` requests, every answer
   * takes `slowMs` longer, for good (a tier past its knee, queues full).
   */
  capacity?: { rate: number, slowMs: number }
  /** paths that never answer (timeouts) */
  hangPaths?: string[]
  /**
   * A site that stops answering for `forMs` at the end of every `everyMs`
   * of its own clock (a GC pause, a failover): a request arriving then is
   * answered when the stall ends. The sitemap is never held.
   */
  stall?: { everyMs: number, forMs: number }
}

export interface FakeSite {
  url: string
  server: Server
  /** GET count per path (sitemap excluded) */
  gets: Map<string, number>
  /** accepted posts per route */
  posts: Map<string, number>
  /** every accepted form body, to check uniqueness */
  bodies: string[]
  /** rejected posts with the reason */
  rejected: string[]
  /** accepted JSON writes to the backend API (/v1/…), by route */
  apiWrites: Map<string, number>
  /** when it fell over (capacity), ms since it started; null while it holds */
  degradedAt: () => number | null
  close: () => Promise<void>
}

const ISO2 = /^[A-Z]{2}$/

function readBody (req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    let data = ''
    req.setEncoding('utf8')
    req.on('data', (c: string) => { data += c })
    req.on('end', () => resolve(data))
    req.on('error', reject)
  })
}

function validate (route: string, f: URLSearchParams): string | null {
  const need = (k: string): string | null => (f.get(k)?.trim() ? null : `missing ${k}`)
  const fields: Record<string, string[]> = {
    comments: ['author', 'body'],
    events: ['organizer', 'email', 'school', 'country', 'city', 'expectedParticipants', 'eventDate'],
    done: ['name', 'country', 'email']
  }
  for (const k of fields[route]) { const e = need(k); if (e) return e }
  // The real frontend writes nothing without a form identity (it asks once more).
  if (!/^[A-Za-z0-9_-]{22,64}$/.test(f.get('form_nonce') ?? '')) return 'missing form_nonce'
  const allowed = new Set([...fields[route], 'form_nonce'])
  for (const k of f.keys()) if (!allowed.has(k)) return `unknown field ${k}`
  if (route === 'events') {
    if (!/^[^@\s]+@[^@\s]+\.[a-z]+$/i.test(f.get('email') ?? '')) return 'bad email'
    if (!ISO2.test(f.get('country') ?? '')) return 'bad country'
    if (!/^\d+$/.test(f.get('expectedParticipants') ?? '')) return 'bad expectedParticipants'
    if (!/^\d{4}-\d{2}-\d{2}$/.test(f.get('eventDate') ?? '') || Number.isNaN(Date.parse(f.get('eventDate') ?? ''))) return 'bad eventDate'
  }
  if (route === 'done' && !ISO2.test(f.get('country') ?? '')) return 'bad country'
  return null
}

export async function startFakeSite (o: FakeSiteOptions = {}): Promise<FakeSite> {
  const cache = o.cache ?? true
  const publicOrigin = o.publicOrigin ?? 'https://hour.flashcrowd.example'
  const news = Array.from({ length: o.news ?? 12 }, (_, i) => `/news/article-${i + 1}`)
  const tutorials = Array.from({ length: o.tutorials ?? 6 }, (_, i) => `/tutorials/tutorial-${i + 1}`)
  const pages = ['/', '/tutorials', '/news', '/events', '/events/new', ...tutorials, ...news]
  const pageSet = new Set(pages)
  const cached = new Set<string>()
  const gets = new Map<string, number>()
  const posts = new Map<string, number>()
  const bodies: string[] = []
  const rejected: string[] = []
  const apiWrites = new Map<string, number>()
  const idempotencyKeys = new Set<string>()
  let origin = ''
  const born = performance.now()
  // arrivals per whole second of the site's clock, for `capacity`: it falls
  // over once three consecutive seconds together held more than three
  // seconds' worth. A sum, not each second alone, so a loaded generator's
  // catch-up burst after a stall does not look like overload.
  let bin = -1
  let binCount = 0
  let recent: number[] = []
  let degradedAt: number | null = null
  const arrive = (): void => {
    if (!o.capacity || degradedAt !== null) return
    const now = performance.now() - born
    const b = Math.floor(now / 1000)
    if (b !== bin) {
      // bins without a single arrival count as empty seconds
      if (bin >= 0) {
        recent.push(binCount)
        for (let gap = bin + 1; gap < b; gap++) recent.push(0)
        recent = recent.slice(-3)
        if (recent.length === 3 && recent[0] + recent[1] + recent[2] > 3 * o.capacity.rate) degradedAt = now
      }
      bin = b
      binCount = 0
    }
    binCount++
  }

  const sitemap = '<?xml version="1.0" encoding="UTF-8"?>\n<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">\n' +
    // listed out of popularity order on purpose: the tool ranks them
    [...news, ...tutorials, '/events', '/events/new', '/tutorials', '/news', '/']
      .map(p => `  <url><loc>${publicOrigin}${p}</loc>${p === '/' ? '<priority>1.0</priority>' : ''}</url>`).join('\n') +
    '\n</urlset>\n'

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const path = (req.url ?? '/').split('?')[0]
    if (path !== '/sitemap.xml') arrive()
    if (o.hangPaths?.includes(path)) return
    if (o.stall && path !== '/sitemap.xml') {
      const phase = (performance.now() - born) % o.stall.everyMs
      if (phase >= o.stall.everyMs - o.stall.forMs) await new Promise(r => setTimeout(r, o.stall!.everyMs - phase))
    }
    if (o.delayMs) await new Promise(r => setTimeout(r, o.delayMs))
    if (degradedAt !== null && o.capacity) await new Promise(r => setTimeout(r, o.capacity!.slowMs))
    if (req.method === 'GET' && path === '/sitemap.xml') {
      res.writeHead(200, { 'content-type': 'application/xml' }).end(sitemap)
      return
    }
    const fail = o.failPaths?.[path]
    if (req.method === 'GET' || req.method === 'HEAD') {
      gets.set(path, (gets.get(path) ?? 0) + 1)
      if (fail) { res.writeHead(fail, { 'content-type': 'text/plain' }).end('failing on purpose'); return }
      if (!pageSet.has(path)) { res.writeHead(404, { 'content-type': 'text/html' }).end('<h1>Not found</h1>'); return }
      const headers: Record<string, string> = { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'public, s-maxage=60' }
      if (cache) {
        const hit = cached.has(path)
        cached.add(path)
        headers['x-cache'] = hit ? 'HIT' : 'MISS'
        headers['cache-status'] = hit ? 'flashcrowd; hit' : 'flashcrowd; fwd=miss; stored'
        headers.age = hit ? '1' : '0'
      }
      res.writeHead(200, headers).end(`<!doctype html><title>${path}</title><h1>${path}</h1><p>${'lorem ipsum '.repeat(40)}</p>`)
      return
    }
    if (req.method === 'POST' && path.startsWith('/v1/')) {
      // the backend's write API (design §7): JSON, an Idempotency-Key, 201
      const body = await readBody(req)
      const route = path.slice(4)
      let doc: Record<string, unknown> | null = null
      try { doc = JSON.parse(body) as Record<string, unknown> } catch { /* below */ }
      const key = String(req.headers['idempotency-key'] ?? '')
      const need: Record<string, string[]> = { comments: ['news', 'author', 'body'], events: ['organizer', 'email', 'school', 'country', 'city', 'expectedParticipants', 'eventDate'], completions: ['tutorial', 'name', 'country', 'email'] }
      const fields = need[route]
      const problem = !fields ? 'no route' : req.headers['content-type'] !== 'application/json' ? 'not JSON' : !doc ? 'bad JSON' : !key ? 'no Idempotency-Key' : idempotencyKeys.has(key) ? 'replayed key' : fields.find(f => doc![f] === undefined || doc![f] === '') ?? Object.keys(doc).find(k => !fields.includes(k)) ?? (route === 'events' && typeof doc.expectedParticipants !== 'number' ? 'expectedParticipants not a number' : null)
      if (problem) {
        rejected.push(`${path}: ${problem}`)
        res.writeHead(400, { 'content-type': 'application/json' }).end(JSON.stringify({ error: 'validation', message: problem }))
        return
      }
      idempotencyKeys.add(key)
      apiWrites.set(route, (apiWrites.get(route) ?? 0) + 1)
      res.writeHead(201, { 'content-type': 'application/json' }).end(JSON.stringify({ id: apiWrites.get(route) }))
      return
    }
    if (req.method === 'POST') {
      const body = await readBody(req)
      const route = /^\/news\/[^/]+\/comments$/.test(path) ? 'comments' : path === '/events' ? 'events' : /^\/tutorials\/[^/]+\/done$/.test(path) ? 'done' : null
      const pass = cache ? { 'x-cache': 'PASS', 'cache-status': 'flashcrowd; fwd=method' } : {}
      if (!route) { res.writeHead(404, pass).end(); return }
      let problem: string | null = null
      if (req.headers.origin !== origin) problem = `cross-site post (origin ${req.headers.origin ?? 'none'})`
      else if (!(req.headers['content-type'] ?? '').startsWith('application/x-www-form-urlencoded')) problem = 'not urlencoded'
      else problem = validate(route, new URLSearchParams(body))
      if (problem) {
        rejected.push(`${path}: ${problem}`)
        res.writeHead(400, { 'content-type': 'text/html', ...pass }).end(`<p>${problem}</p>`)
        return
      }
      posts.set(route, (posts.get(route) ?? 0) + 1)
      bodies.push(body)
      const location = route === 'comments' ? path.replace(/\/comments$/, '') : route === 'events' ? '/events' : '/certificates/c' + bodies.length
      res.writeHead(303, { location, ...pass }).end()
      return
    }
    res.writeHead(405).end()
  }

  const server = createServer((req, res) => {
    handle(req, res).catch(() => { if (!res.headersSent) res.writeHead(500); res.end() })
  })
  server.keepAliveTimeout = 5000
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  const port = (server.address() as AddressInfo).port
  origin = `http://127.0.0.1:${port}`
  return {
    url: origin,
    server,
    gets,
    posts,
    bodies,
    rejected,
    apiWrites,
    degradedAt: () => degradedAt,
    close: () => new Promise<void>(resolve => {
      server.closeAllConnections()
      server.close(() => resolve())
    })
  }
}
