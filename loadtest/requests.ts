// Request generators: what each virtual visitor sends next. One seeded
// generator per worker feeds every connection of that worker
// (http-client.ts), so the mix over the whole run follows the scenario
// whatever the number of connections. Every write carries a unique body and
// its own form identity (`form_nonce`, as form-nonce.js sets it in a
// browser): the frontend derives its idempotency key from both, and asks
// again before writing a post that has no identity, which would measure a
// confirmation page, not a write.
//
// On the wire, a page read is the same bytes every time: its request is
// built once and reused; only writes are built per request.
import { endpointOf, isReadMethod } from './endpoints.js'
import { createRng, WeightedSampler, type Rng } from './random.js'
import type { MixItem, Scenario } from './scenarios.js'
import { ZipfSampler } from './zipf.js'
import type { RequestMeta } from './group.js'

export interface GeneratedRequest {
  method: string
  path: string
  headers: Record<string, string>
  body?: string
  meta: RequestMeta
}

const COUNTRIES = ['US', 'GB', 'IN', 'BR', 'DE', 'FR', 'NG', 'KE', 'MX', 'CA', 'AU', 'JP', 'ES', 'IT', 'PL', 'ZA', 'EG', 'PH', 'ID', 'AR', 'SE', 'NL', 'TR', 'KR']
const CITIES = ['Springfield', 'Lagos', 'Pune', 'Recife', 'Leeds', 'Lyon', 'Nairobi', 'Puebla', 'Osaka', 'Gdansk', 'Cebu', 'Rosario']
const FIRST = ['Ada', 'Grace', 'Alan', 'Katherine', 'Linus', 'Margaret', 'Tim', 'Radia', 'Ken', 'Barbara', 'Dennis', 'Frances']
const LAST = ['Lovelace', 'Hopper', 'Turing', 'Johnson', 'Torvalds', 'Hamilton', 'Berners-Lee', 'Perlman', 'Thompson', 'Liskov', 'Ritchie', 'Allen']

/** Headers of every page read, shared with warm.ts so warming fills the same cache variants. */
export const PAGE_HEADERS: Readonly<Record<string, string>> = {
  accept: 'text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8',
  'accept-encoding': 'gzip, br',
  'user-agent': 'flashcrowd-loadtest'
}

const pick = <T>(xs: readonly T[], rng: Rng): T => xs[Math.floor(rng() * xs.length)]

function isoDate (d: Date): string {
  return d.toISOString().slice(0, 10)
}

/** Form bodies; `n` and `runId` make each one unique. */
export const formBodies = {
  comment (n: number, runId: string, rng: Rng): Record<string, string> {
    return {
      author: `${pick(FIRST, rng)} ${pick(LAST, rng)}`,
      body: `Load test comment ${runId}-${n}: my class of ${10 + Math.floor(rng() * 30)} loved this!`
    }
  },
  signup (n: number, runId: string, rng: Rng, today = new Date()): Record<string, string> {
    const date = new Date(Date.UTC(today.getUTCFullYear(), today.getUTCMonth(), today.getUTCDate() + 1 + Math.floor(rng() * 90)))
    return {
      organizer: `${pick(FIRST, rng)} ${pick(LAST, rng)}`,
      email: `loadtest+${runId}-${n}@example.org`,
      school: `Load Test School ${runId}-${n}`,
      country: pick(COUNTRIES, rng),
      city: pick(CITIES, rng),
      expectedParticipants: String(5 + Math.floor(rng() * 495)),
      eventDate: isoDate(date)
    }
  },
  /** With the form's optional address: every completion queues its certificate e-mail, as every sign-up queues its confirmation. */
  completion (n: number, runId: string, rng: Rng): Record<string, string> {
    return { name: `${pick(FIRST, rng)} ${runId}-${n}`, country: pick(COUNTRIES, rng), email: `loadtest+${runId}-c${n}@example.org` }
  }
}

/** JSON bodies of the backend's write API (design §7), for a run straight at a backend. */
export const apiBodies = {
  comment (news: string, n: number, runId: string, rng: Rng): Record<string, unknown> {
    return { news, ...formBodies.comment(n, runId, rng) }
  },
  signup (n: number, runId: string, rng: Rng, today = new Date()): Record<string, unknown> {
    const f = formBodies.signup(n, runId, rng, today)
    return { ...f, expectedParticipants: Number(f.expectedParticipants) }
  },
  completion (tutorial: string, n: number, runId: string, rng: Rng): Record<string, unknown> {
    return { tutorial, ...formBodies.completion(n, runId, rng) }
  }
}

/**
 * 'site': pages and form posts, as a browser sends them (through the cache
 * or straight at a frontend). 'backend': the write API only
 * (POST /v1/comments, /v1/events, /v1/completions with JSON bodies and an
 * Idempotency-Key), to measure a backend alone; the mix's reads are skipped.
 */
export type Target = 'site' | 'backend'

export interface GeneratorOptions {
  scenario: Pick<Scenario, 'mix' | 'zipf'>
  /** page paths on base, most popular first (sitemap.ts rankPages) */
  pages: readonly string[]
  base: string
  seed: number
  /** distinguishes this run's writes from other runs' */
  runId?: string
  target?: Target
}

/** A request as bytes on the wire, with what the accounting needs to know of it. */
export interface WireRequest {
  buffer: Buffer
  meta: RequestMeta
}

function slugOf (path: string): string {
  return path.replace(/\/$/, '').split('/').pop() ?? ''
}

export class RequestGenerator {
  readonly pages: readonly string[]
  readonly #mix: MixItem[]
  readonly #mixSampler: WeightedSampler
  readonly #zipf: ZipfSampler
  readonly #rng: Rng
  readonly #origin: string
  readonly #prefix: string
  readonly #news: string[]
  readonly #tutorials: string[]
  readonly runId: string
  readonly target: Target
  readonly #host: string
  readonly #metas = new Map<string, RequestMeta>()
  readonly #wireCache = new Map<string, WireRequest>()
  readonly #fixedCache = new Map<MixItem, WireRequest>()
  #writes = 0

  constructor (o: GeneratorOptions) {
    if (o.pages.length === 0) throw new Error('no pages to browse')
    const baseUrl = new URL(o.base)
    this.#origin = baseUrl.origin
    this.#host = baseUrl.host
    this.#prefix = baseUrl.pathname.replace(/\/$/, '')
    this.pages = o.pages
    this.target = o.target ?? 'site'
    const writes = new Set(['comment', 'signup', 'completion'])
    this.#mix = o.scenario.mix.filter(m => m.weight > 0 && (this.target === 'site' || writes.has(m.action)))
    if (this.#mix.length === 0) throw new Error('a run straight at a backend sends writes only, and this mix has none')
    this.#rng = createRng(o.seed)
    this.#mixSampler = new WeightedSampler(this.#mix.map(m => m.weight), this.#rng)
    this.#zipf = new ZipfSampler(o.pages.length, { s: o.scenario.zipf, seed: o.seed ^ 0x5bd1e995 })
    this.#news = o.pages.filter(p => this.#endpoint('GET', p) === '/news/:slug')
    this.#tutorials = o.pages.filter(p => this.#endpoint('GET', p) === '/tutorials/:slug')
    this.runId = o.runId ?? (o.seed >>> 0).toString(36) + '-' + Date.now().toString(36)
    const actions = new Set(this.#mix.map(m => m.action))
    if (actions.has('comment') && this.#news.length === 0) throw new Error('the mix posts comments but the sitemap lists no /news/:slug article')
    if (actions.has('completion') && this.#tutorials.length === 0) throw new Error('the mix marks tutorials done but the sitemap lists no /tutorials/:slug page')
  }

  #endpoint (method: string, path: string): string {
    const p = this.#prefix && path.startsWith(this.#prefix + '/') ? path.slice(this.#prefix.length) : path
    return endpointOf(method, p)
  }

  /** One meta object per endpoint: the recorder keys its cells by identity. */
  #meta (method: string, path: string): RequestMeta {
    const endpoint = this.#endpoint(method, path)
    const key = `${method} ${endpoint}`
    let m = this.#metas.get(key)
    if (!m) this.#metas.set(key, (m = Object.freeze({ method, endpoint, read: isReadMethod(method) })))
    return m
  }

  #get (path: string): GeneratedRequest {
    return {
      method: 'GET',
      path,
      headers: { ...PAGE_HEADERS },
      meta: this.#meta('GET', path)
    }
  }

  #apiPost (path: string, body: Record<string, unknown>): GeneratedRequest {
    return {
      method: 'POST',
      path,
      headers: {
        accept: 'application/json',
        'content-type': 'application/json',
        // a unique key per write: a retry of the same write is what the key is for, not a load test
        'idempotency-key': `loadtest-${this.runId}-${this.#writes}`,
        'user-agent': 'flashcrowd-loadtest'
      },
      body: JSON.stringify(body),
      meta: this.#meta('POST', path)
    }
  }

  #post (path: string, fields: Record<string, string>): GeneratedRequest {
    // 128 bits, hex, from the seeded generator: a new form instance per write, the same run after run.
    let nonce = ''
    for (let i = 0; i < 4; i++) nonce += Math.floor(this.#rng() * 0x1_0000_0000).toString(16).padStart(8, '0')
    fields = { ...fields, form_nonce: nonce }
    return {
      method: 'POST',
      path,
      headers: {
        accept: 'text/html',
        'content-type': 'application/x-www-form-urlencoded',
        // the frontend refuses cross-site posts (CSRF): be same-origin
        origin: this.#origin,
        'user-agent': 'flashcrowd-loadtest'
      },
      body: new URLSearchParams(fields).toString(),
      meta: this.#meta('POST', path)
    }
  }

  /** The next request of the mix. */
  next (): GeneratedRequest {
    return this.#nextOf(this.#mix[this.#mixSampler.next()])
  }

  #nextOf (item: MixItem): GeneratedRequest {
    if (this.target === 'backend') {
      switch (item.action) {
        case 'comment':
          return this.#apiPost(`${this.#prefix}/v1/comments`, apiBodies.comment(slugOf(this.#news[this.#zipf.next() % this.#news.length]), ++this.#writes, this.runId, this.#rng))
        case 'signup':
          return this.#apiPost(`${this.#prefix}/v1/events`, apiBodies.signup(++this.#writes, this.runId, this.#rng))
        default:
          return this.#apiPost(`${this.#prefix}/v1/completions`, apiBodies.completion(slugOf(this.#tutorials[this.#zipf.next() % this.#tutorials.length]), ++this.#writes, this.runId, this.#rng))
      }
    }
    switch (item.action) {
      case 'request': return this.#fixed(item)
      case 'browse': return this.#get(this.pages[this.#zipf.next()])
      case 'page': return this.#get(this.#prefix + item.path)
      case 'comment': {
        const article = this.#news[this.#zipf.next() % this.#news.length]
        return this.#post(`${article.replace(/\/$/, '')}/comments`, formBodies.comment(++this.#writes, this.runId, this.#rng))
      }
      case 'signup':
        return this.#post(`${this.#prefix}/events`, formBodies.signup(++this.#writes, this.runId, this.#rng))
      case 'completion': {
        const tutorial = this.#tutorials[this.#zipf.next() % this.#tutorials.length]
        return this.#post(`${tutorial.replace(/\/$/, '')}/done`, formBodies.completion(++this.#writes, this.runId, this.#rng))
      }
    }
  }

  /** A fixed request of the mix, as given: its headers replace the defaults of the same name (Host, Connection, Content-Length). */
  #fixed (item: Extract<MixItem, { action: 'request' }>): GeneratedRequest {
    const method = item.method.toUpperCase()
    const path = this.#prefix + item.path
    return { method, path, headers: { ...item.headers }, body: item.body === '' ? undefined : item.body, meta: this.#meta(method, path) }
  }

  /** HTTP/1.1 request bytes: keep-alive, Host of the base URL, then the request's own headers. */
  #wire (r: GeneratedRequest): Buffer {
    const given = new Set(Object.keys(r.headers).map(k => k.toLowerCase()))
    let head = `${r.method} ${r.path} HTTP/1.1\r\n`
    if (!given.has('host')) head += `Host: ${this.#host}\r\n`
    if (!given.has('connection')) head += 'Connection: keep-alive\r\n'
    for (const [k, v] of Object.entries(r.headers)) head += `${k}: ${v}\r\n`
    if (r.body === undefined) return Buffer.from(head + '\r\n', 'latin1')
    const body = Buffer.from(r.body, 'utf8')
    if (given.has('content-length')) return Buffer.concat([Buffer.from(head + '\r\n', 'latin1'), body])
    return Buffer.concat([Buffer.from(`${head}Content-Length: ${body.length}\r\n\r\n`, 'latin1'), body])
  }

  /**
   * The next request as bytes. A page read is looked up by its page (the
   * bytes and the meta built on its first draw), without building the
   * request again: it draws from the generator exactly as next() does, so a
   * seed gives the same sequence either way. Writes are built each time.
   */
  nextWire (): WireRequest {
    const item = this.#mix[this.#mixSampler.next()]
    if (this.target === 'site') {
      if (item.action === 'request') {
        // the same bytes every time: built on the first draw
        let w = this.#fixedCache.get(item)
        if (w === undefined) {
          const r = this.#fixed(item)
          this.#fixedCache.set(item, (w = { buffer: this.#wire(r), meta: r.meta }))
        }
        return w
      }
      if (item.action === 'browse') return this.#pageWire(this.pages[this.#zipf.next()])
      if (item.action === 'page') return this.#pageWire(this.#prefix + item.path)
    }
    const r = this.#nextOf(item)
    return { buffer: this.#wire(r), meta: r.meta }
  }

  #pageWire (path: string): WireRequest {
    let w = this.#wireCache.get(path)
    if (w === undefined) {
      const r = this.#get(path)
      this.#wireCache.set(path, (w = { buffer: this.#wire(r), meta: r.meta }))
    }
    return w
  }
}
