/**
 * How every cacheable answer is produced and sent: one pipeline, so cache
 * headers, validators, tags and the render cache cannot differ between pages.
 *
 *   ?rev present → wait for the replica, render, `private, no-store`
 *   render cache hit → send (with Age)
 *   miss → one render per key at a time → store if safe → send
 *   send → Cache-Control, ETag, Surrogate-Key; 304 when If-None-Match matches
 */
import type { FastifyReply, FastifyRequest } from 'fastify'
import { formatSurrogateKeys } from '../common/surrogate-keys.js'
import { SafeHtml } from './html.js'
import { NO_STORE, NOT_YET_SHAREABLE, POLICIES, cacheControl, ifNoneMatchHits, strongEtag, type PolicyName } from './cache-headers.js'
import type { RenderCache, RenderedPage } from './render-cache.js'
import { parseLsn, type ReadYourWrites } from './read-your-writes.js'

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
  render: () => Promise<PageResult>
}

export interface PageServerOptions {
  cache: RenderCache
  ryw: ReadYourWrites
  now: () => number
  onRender?: (key: string, ms: number, outcome: 'miss' | 'bypass') => void
  onHit?: (level: 1 | 2) => void
  log?: (msg: string, extra?: Record<string, unknown>) => void
}

const HTML = 'text/html; charset=utf-8'

export type RenderOutcome = 'hit' | 'miss' | 'shared-hit' | 'bypass' | 'coalesced'

export function createPageServer (options: PageServerOptions) {
  const { cache, ryw, now } = options
  /** Renders in progress by key: concurrent misses share one render (no stampede on a hot page). */
  let inflight = new Map<string, Promise<RenderedPage>>()

  function toPage (result: PageResult, cc: string): RenderedPage {
    const body = Buffer.from(result.body instanceof SafeHtml ? result.body.value : result.body, 'utf8')
    return {
      status: result.status ?? 200,
      contentType: result.contentType ?? HTML,
      body,
      etag: strongEtag(body),
      tags: result.tags,
      cacheControl: cc,
      renderedAt: now(),
      ttlMs: POLICIES[result.policy].sMaxAge * 1000
    }
  }

  async function renderShared (spec: PageSpec): Promise<RenderedPage> {
    const token = cache.begin()
    const before = ryw.snapshot()
    const started = performance.now()
    const result = await spec.render()
    options.onRender?.(spec.key, performance.now() - started, 'miss')
    // A page that may show data older than a purge it raced with is not for sharing (design §2.3, §2.4).
    const safe = ryw.cacheable(before, result.tags) && !cache.invalidatedSince(token, result.tags)
    const page = toPage(result, safe ? cacheControl(POLICIES[result.policy]) : NOT_YET_SHAREABLE)
    if (safe) cache.set(spec.key, page, token)
    return page
  }

  function send (request: FastifyRequest, reply: FastifyReply, page: RenderedPage, outcome: RenderOutcome, privateOnly = false) {
    reply.code(page.status)
    reply.header('content-type', page.contentType)
    reply.header('cache-control', privateOnly ? NO_STORE : page.cacheControl)
    reply.header('etag', page.etag)
    if (page.tags.length > 0) reply.header('surrogate-key', formatSurrogateKeys(page.tags))
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
      if (lsn !== undefined) {
        // The author's own view after a write: never shared, never from the render cache.
        const replayed = await ryw.waitFor(lsn)
        reply.header('x-read-your-writes', replayed ? 'replayed' : 'timeout')
        if (!replayed) options.log?.('read pool did not replay the write in time', { rev })
        const started = performance.now()
        const result = await spec.render()
        options.onRender?.(spec.key, performance.now() - started, 'bypass')
        return send(request, reply, toPage(result, NO_STORE), 'bypass')
      }
      const local = cache.getLocal(spec.key)
      if (local) {
        options.onHit?.(1)
        return send(request, reply, local, 'hit', privateOnly)
      }
      // A shared page is only as good as the replica it was rendered from: while
      // one of its keys waits for a write to replay here, render it ourselves (design §2.4).
      const hit = await cache.get(spec.key, (page) => ryw.cacheable(ryw.snapshot(), page.tags))
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
