/**
 * Security headers and the cross-site form check.
 *
 * Pages are cached and shared, so they cannot carry a per-visitor CSRF token;
 * instead every form post must prove it comes from our own pages: the
 * browser's `Sec-Fetch-Site` (same-origin) or, failing that, an `Origin`
 * naming this site. A post with neither (or from elsewhere) is refused with
 * 403 and never reaches the backend.
 */
import fp from 'fastify-plugin'
import helmet from '@fastify/helmet'
import type { FastifyInstance, FastifyRequest } from 'fastify'

/** What the pages need and nothing more: own scripts, styles, images and forms only; no inline code at all. */
export const CONTENT_SECURITY_POLICY = {
  useDefaults: false,
  directives: {
    defaultSrc: ["'self'"],
    scriptSrc: ["'self'"],
    styleSrc: ["'self'"],
    imgSrc: ["'self'", 'data:'],
    fontSrc: ["'self'"],
    connectSrc: ["'self'"],
    formAction: ["'self'"],
    frameAncestors: ["'none'"],
    baseUri: ["'self'"],
    objectSrc: ["'none'"],
    scriptSrcAttr: ["'none'"]
  }
}

export const securityPlugin = fp(async function securityPlugin (app: FastifyInstance) {
  await app.register(helmet, {
    contentSecurityPolicy: CONTENT_SECURITY_POLICY,
    // Same-origin embedding only; referrers stay on our site.
    referrerPolicy: { policy: 'strict-origin-when-cross-origin' },
    crossOriginEmbedderPolicy: false
  })
}, { name: 'flashcrowd-frontend-security', fastify: '5.x' })

export interface OriginCheckOptions {
  /** Extra origins accepted besides the request's own host. */
  allowedOrigins: readonly string[]
}

/** Whether a form post may go through; the reason when not. */
export function checkSameOrigin (request: Pick<FastifyRequest, 'headers' | 'host' | 'protocol'>, options: OriginCheckOptions): { ok: true } | { ok: false, reason: string } {
  const site = request.headers['sec-fetch-site']
  if (site === 'same-origin' || site === 'none') return { ok: true }
  if (site === 'cross-site' || site === 'same-site') return { ok: false, reason: `Sec-Fetch-Site: ${site}` }
  const origin = request.headers.origin
  if (typeof origin !== 'string' || origin === 'null') return { ok: false, reason: 'no Origin or Sec-Fetch-Site header' }
  let parsed: URL
  try { parsed = new URL(origin) } catch { return { ok: false, reason: 'malformed Origin' } }
  if (options.allowedOrigins.includes(parsed.origin)) return { ok: true }
  // request.host honours X-Forwarded-Host only from trusted proxies (trustProxy).
  let own: string
  try { own = new URL(`${parsed.protocol}//${request.host}`).host } catch { return { ok: false, reason: 'malformed Host' } }
  // Compared as URL hosts, so `localhost:80` and `http://localhost` agree (default ports drop out).
  if (parsed.host === own) return { ok: true }
  return { ok: false, reason: `Origin ${parsed.origin} is not this site` }
}
