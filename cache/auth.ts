/**
 * Credentials for the cache's admin requests (PURGE, BAN, health details):
 * a bearer token, ADMIN_TOKEN, compared in constant time.
 */
import { createHash, timingSafeEqual } from 'node:crypto'

export type AuthResult = 'ok' | 'missing' | 'wrong'

const digest = (s: string) => createHash('sha256').update(s).digest()

/**
 * Bearer token check in constant time: both sides are hashed first so the
 * comparison takes as long whatever the length of the guess.
 */
export function authorize (authorization: string | undefined, token: string | undefined): AuthResult {
  if (!authorization) return 'missing'
  const m = /^Bearer\s+(\S+)\s*$/i.exec(authorization)
  if (!m) return 'missing'
  // No token configured: the endpoints refuse everything (config.ts).
  if (!token) return 'wrong'
  return timingSafeEqual(digest(m[1]), digest(token)) ? 'ok' : 'wrong'
}
