// Request generators: what each virtual visitor sends next. One shared,
// seeded generator feeds every autocannon connection through `setupRequest`,
// so the mix over the whole run follows the scenario whatever the number of
// connections. Every write carries a unique body and its own form identity
// (`form_nonce`, as form-nonce.js sets it in a browser): the frontend derives
// its idempotency key from both, and asks again before writing a post that
// has no identity, which would measure a confirmation page, not a write.
import type autocannon from 'autocannon'
import { endpointOf } from './endpoints.js'
import { createRng, WeightedSampler, type Rng } from './random.js'
import type { MixItem, Scenario } from './scenarios.js'
import { ZipfSampler } from './zipf.js'
import type { Collector, RequestMeta } from './collect.js'

export interface GeneratedRequest {
  method: 'GET' | 'POST'
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
  completion (n: number, runId: string, rng: Rng): Record<string, string> {
    return { name: `${pick(FIRST, rng)} ${runId}-${n}`, country: pick(COUNTRIES, rng) }
  }
}

export interface GeneratorOptions {
  scenario: Pick<Scenario, 'mix' | 'zipf'>
  /** page paths on base, most popular first (sitemap.ts rankPages) */
  pages: readonly string[]
  base: string
  seed: number
  /** distinguishes this run's writes from other runs' */
  runId?: string
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
  #writes = 0

  constructor (o: GeneratorOptions) {
    if (o.pages.length === 0) throw new Error('no pages to browse')
    const baseUrl = new URL(o.base)
    this.#origin = baseUrl.origin
    this.#prefix = baseUrl.pathname.replace(/\/$/, '')
    this.pages = o.pages
    this.#mix = o.scenario.mix.filter(m => m.weight > 0)
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

  #get (path: string): GeneratedRequest {
    return {
      method: 'GET',
      path,
      headers: { ...PAGE_HEADERS },
      meta: { method: 'GET', endpoint: this.#endpoint('GET', path) }
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
      meta: { method: 'POST', endpoint: this.#endpoint('POST', path) }
    }
  }

  /** The next request of the mix. */
  next (): GeneratedRequest {
    const item = this.#mix[this.#mixSampler.next()]
    switch (item.action) {
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

  /**
   * autocannon `requests`: one entry whose setupRequest draws the next
   * request and whose onResponse hands the response headers (X-Cache) and
   * the request's endpoint to the collector. autocannon resets the context
   * before each loop over `requests`, so the meta lives exactly as long as
   * the request it describes.
   */
  autocannonRequests (collector: Collector): autocannon.Request[] {
    const setupRequest = (req: autocannon.Request, context: Record<string, unknown>): autocannon.Request => {
      const r = this.next()
      context.meta = r.meta
      req.method = r.method
      req.path = r.path
      req.headers = r.headers
      req.body = r.body ?? ''
      return req
    }
    const onResponse = (_status: number, _body: string, context: Record<string, unknown>, headers: Record<string, string | string[]>): void => {
      collector.noteHeaders(context.meta as RequestMeta, headers)
    }
    return [{ setupRequest, onResponse } as unknown as autocannon.Request]
  }
}
