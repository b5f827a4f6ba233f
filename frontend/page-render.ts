/**
 * How every cacheable answer is produced and sent: one pipeline, so cache
 * headers, validators, tags and the render cache cannot differ between pages.
 *
 *   ?rev present → the replica if it replayed the write, else the primary at once, render, `private, no-store`
 *   X-Invalidated-After from the cache → wait until this frontend applied that bus event
 *   render cache hit → send (with Age)
 *   miss → one render per key at a time → store if safe → send
 *   send → Cache-Control, ETag, Surrogate-Key; 304 when If-None-Match matches
 */
import type { FastifyReply, FastifyRequest } from 'fastify'
import { formatSurrogateKeys } from '../common/surrogate-keys.js'
import { parseBusId, type BusPosition } from '../common/bus-position.js'
import { SafeHtml } from './html.js'
import { NO_STORE, NOT_YET_SHAREABLE, POLICIES, cacheControl, cdnCacheControl, ifNoneMatchHits, strongEtag, type PolicyName } from './cache-headers.js'
import type { RenderCache, RenderedPage } from './render-cache.js'
import { formatLsn, parseLsn, type ReadYourWrites } from './read-your-writes.js'
import type { ContentRepository } from './repositories.js'
import type { PrimaryReads } from './primary-reads.js'

export interface PageResult {
  status?: number
  body: string | SafeHtml
  contentType?: string
  /** Surrogate keys of what the page shows. */
  tags: string[]
  policy: PolicyName
}

export interface PageSpec {
  /** Render-cache key: the canonical path and query of the page. */
  key: string
  /** Reads through `repos` only: the read pool, or the primary for an author the replica kept waiting. */
  render: (repos: ContentRepository) => Promise<PageResult>
}

/** The cache layer names the newest bus event it applied on every fetch for its store (cache/invalidated-after.ts). */
export const INVALIDATED_AFTER = 'x-invalidated-after'

/** How an author's own view after a write was read. */
export type AuthorView = 'replayed' | 'primary' | 'timeout'

export interface PageServerOptions {
  cache: RenderCache
  ryw: ReadYourWrites
  /** The read pool's repository. */
  repos: ContentRepository
  /** The primary, for authors the read pool kept waiting too long; absent when the read pool is the primary. */
  primary?: PrimaryReads
  /** This frontend's position on the invalidation bus. */
  bus: BusPosition
  /** How long a fetch naming a newer bus event waits for this frontend to apply it. */
  busWaitMs: number
  /** Whether the request came straight from a trusted proxy (the cache layer): only then is X-Invalidated-After believed. */
  trustedPeer: (request: FastifyRequest) => boolean
  now: () => number
  onRender?: (key: string, ms: number, outcome: 'miss' | 'bypass') => void
  onHit?: (level: 1 | 2) => void
  onAuthorView?: (view: AuthorView) => void
  /** A fetch named a bus event this frontend had not applied within busWaitMs. */
  onBehindBus?: (wanted: string, have: string | undefined) => void
  log?: (msg: string, extra?: Record<string, unknown>) => void
  /** The CDN's lifetime of pages a write can change, seconds (FRONTEND_CDN_MAX_AGE); undefined: no CDN-Cache-Control. */
  cdnMaxAge?: number
  /** The CDN's own tag field where it is not Surrogate-Key (Cloudflare: Cache-Tag, comma-separated). */
  cdnTagField?: string
}

const HTML = 'text/html; charset=utf-8'

export type RenderOutcome = 'hit' | 'miss' | 'shared-hit' | 'bypass' | 'coalesced'

export function createPageServer (options: PageServerOptions) {
  const { cache, ryw, now, repos, bus } = options
  /** Renders in progress by key: concurrent misses share one render (no stampede on a hot page). */
  let inflight = new Map<string, Promise<RenderedPage>>()
  /** Refetches waiting for this frontend to apply the bus event they name. */
  let busWaits = 0

  function toPage (result: PageResult, cc: string): RenderedPage {
    const shared = cc !== NO_STORE && cc !== NOT_YET_SHAREABLE
    const body = Buffer.from(result.body instanceof SafeHtml ? result.body.value : result.body, 'utf8')
    return {
      status: result.status ?? 200,
      contentType: result.contentType ?? HTML,
      body,
      etag: strongEtag(body),
      tags: result.tags,
      cacheControl: cc,
      ...(shared && options.cdnMaxAge !== undefined ? { cdnCacheControl: cdnCacheControl(POLICIES[result.policy], options.cdnMaxAge) } : {}),
      renderedAt: now(),
      ttlMs: POLICIES[result.policy].sMaxAge * 1000
    }
  }

  async function renderShared (spec: PageSpec): Promise<RenderedPage> {
    // Both tickets before the first query: what the render may have missed is
    // judged from where things stood when it started (issue 11, finding 4).
    const token = cache.begin()
    const ticket = ryw.beginRender()
    const started = performance.now()
    let result: PageResult
    try {
      result = await spec.render(repos)
    } catch (err) {
      ryw.abandonRender(ticket)
      throw err
    }
    options.onRender?.(spec.key, performance.now() - started, 'miss')
    // A page that may show data older than a purge it raced with is not for sharing (design §2.3, §2.4).
    const replayed = ryw.endRender(ticket, result.tags)
    const safe = replayed && !cache.invalidatedSince(token, result.tags, spec.key)
    const page = toPage(result, safe ? cacheControl(POLICIES[result.policy]) : NOT_YET_SHAREABLE)
    if (safe) cache.set(spec.key, page, token)
    return page
  }

  /** A render for one answer only: from `from`, never stored, with `cc`. */
  async function renderOnce (spec: PageSpec, from: ContentRepository, cc: string): Promise<RenderedPage> {
    const started = performance.now()
    const result = await spec.render(from)
    options.onRender?.(spec.key, performance.now() - started, 'bypass')
    return toPage(result, cc)
  }

  /**
   * The author's own view after a write: never shared, never from the render
   * cache, always showing the write. Authors never wait for the replica: when
   * the read pool has not replayed the write yet (one probe of its replay
   * position, as GitLab's database load balancer asks its replicas), the page
   * is read from the primary at once, within its bounded pool
   * (primary-reads.ts). Only when the primary cannot take it (no primary
   * pool, its queue full, or the primary failing over) does the author wait,
   * bounded, for the replica.
   */
  async function authorView (request: FastifyRequest, reply: FastifyReply, spec: PageSpec, lsn: bigint) {
    let view: AuthorView = 'replayed'
    let page: RenderedPage | undefined
    if (!await ryw.replayedNow(lsn)) {
      page = await fromPrimary(spec, lsn)
      if (page) view = 'primary'
      else if (!await ryw.waitFor(lsn)) {
        view = 'timeout'
        options.log?.('read pool did not replay the write in time', { rev: formatLsn(lsn) })
      }
    }
    page ??= await renderOnce(spec, repos, NO_STORE)
    options.onAuthorView?.(view)
    reply.header('x-read-your-writes', view)
    return send(request, reply, page, 'bypass')
  }

  /** The author's page from the primary; undefined when there is none, it is saturated or failing, or `lsn` names no commit. */
  async function fromPrimary (spec: PageSpec, lsn: bigint): Promise<RenderedPage | undefined> {
    const primary = options.primary
    if (!primary) return undefined
    try {
      // Only for a real commit (a bus event named it, or the primary has
      // written that far): a made-up rev buys no render on the primary.
      const read = await primary.read(async (primaryRepos) => ryw.knowsCommit(lsn) || await primary.committed(lsn)
        ? await renderOnce(spec, primaryRepos, NO_STORE)
        : undefined)
      if (!read.ok) options.log?.('primary reads are saturated: the author waits for the replica', { reason: read.reason })
      else return read.value
    } catch (err) {
      options.log?.('reading the author\'s page from the primary failed: the author waits for the replica', { err })
    }
    return undefined
  }

  /** The bus event a trusted cache node says this fetch follows; undefined when none (or not believed). */
  function invalidatedAfter (request: FastifyRequest): string | undefined {
    const value = request.headers[INVALIDATED_AFTER]
    if (typeof value !== 'string' || parseBusId(value) === undefined) return undefined
    return options.trustedPeer(request) ? value : undefined
  }

  function send (request: FastifyRequest, reply: FastifyReply, page: RenderedPage, outcome: RenderOutcome, privateOnly = false) {
    reply.code(page.status)
    reply.header('content-type', page.contentType)
    reply.header('cache-control', privateOnly ? NO_STORE : page.cacheControl)
    reply.header('etag', page.etag)
    if (page.tags.length > 0) reply.header('surrogate-key', formatSurrogateKeys(page.tags))
    if (page.cdnCacheControl !== undefined && !privateOnly) reply.header('cdn-cache-control', page.cdnCacheControl)
    if (options.cdnTagField !== undefined && page.tags.length > 0) reply.header(options.cdnTagField, [...new Set(page.tags)].join(','))
    reply.header('x-render-cache', outcome)
    if (outcome === 'hit' || outcome === 'shared-hit') {
      // The stored copy has aged; caches downstream must not count its lifetime from now (RFC 9111 §4.2.3).
      reply.header('age', String(Math.max(0, Math.floor((now() - page.renderedAt) / 1000))))
    }
    // RFC 9110 §13.1.2 / §15.4.5: a matching If-None-Match on a GET/HEAD gets 304 with the same validators and cache headers.
    if (page.status === 200 && ifNoneMatchHits(request.headers['if-none-match'], page.etag)) {
      reply.removeHeader('content-type')
      return reply.code(304).send()
    }
    return reply.send(page.body)
  }

  return {
    async serve (request: FastifyRequest, reply: FastifyReply, spec: PageSpec) {
      const rev = (request.query as Record<string, unknown> | undefined)?.rev
      // A malformed rev is no write of anybody's: the page comes from the render
      // cache as usual (made-up revs cannot force renders), answered private
      // (they cannot fill shared caches either).
      const lsn = rev === undefined ? undefined : parseLsn(rev)
      const privateOnly = rev !== undefined
      if (lsn !== undefined) return authorView(request, reply, spec, lsn)
      // A cache node refetching after a purge (design §2.3, issue 11 finding 3):
      // nothing rendered before that purge may answer it. Once this frontend has
      // applied the same event, its render cache and pending writes reflect it;
      // until then, neither can be trusted, so wait (bounded) for the bus.
      const after = invalidatedAfter(request)
      if (after !== undefined && !bus.reached(after)) {
        busWaits++
        const caughtUp = await bus.waitFor(after, options.busWaitMs).finally(() => { busWaits-- })
        if (!caughtUp) {
          options.onBehindBus?.(after, bus.current)
          // Cannot prove this page is newer than the purge: fresh, and for no shared cache.
          return send(request, reply, await renderOnce(spec, repos, NOT_YET_SHAREABLE), 'bypass', privateOnly)
        }
      }
      const local = cache.getLocal(spec.key)
      if (local) {
        options.onHit?.(1)
        return send(request, reply, local, 'hit', privateOnly)
      }
      // A shared page is only as good as the replica it was rendered from: while
      // one of its keys waits for a write to replay here, render it ourselves (design §2.4).
      const hit = await cache.get(spec.key, (page) => !ryw.pendingFor(page.tags))
      if (hit) {
        options.onHit?.(hit.level)
        return send(request, reply, hit.page, hit.level === 1 ? 'hit' : 'shared-hit', privateOnly)
      }
      let pending = inflight.get(spec.key)
      let outcome: RenderOutcome = 'coalesced'
      if (!pending) {
        outcome = 'miss'
        const map = inflight
        pending = renderShared(spec).finally(() => { if (map.get(spec.key) === pending) map.delete(spec.key) })
        map.set(spec.key, pending)
      }
      return send(request, reply, await pending, outcome, privateOnly)
    },

    /** Refetches waiting for this frontend's bus to reach the event they name (for tests and metrics). */
    get busWaits (): number { return busWaits },

    /** After an invalidation, new requests must not join renders that started before it. */
    forgetInflight () {
      if (inflight.size > 0) inflight = new Map()
    }
  }
}

export type PageServer = ReturnType<typeof createPageServer>

/** Answers that are about one visitor's request (form errors, 303s): never stored. */
export function sendPrivateHtml (reply: FastifyReply, status: number, body: SafeHtml | string) {
  reply.code(status).header('content-type', HTML).header('cache-control', NO_STORE)
  return reply.send(body instanceof SafeHtml ? body.value : body)
}
