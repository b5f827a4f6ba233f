/**
 * Editor credentials: `Authorization: Bearer $ADMIN_TOKEN`, compared in
 * constant time (both sides hashed first so their lengths never leak either).
 */
import { createHash, timingSafeEqual } from 'node:crypto'
import type { FastifyRequest } from 'fastify'
import { Errors } from '../common/errors.js'

const digest = (s: string) => createHash('sha256').update(s).digest()

export function tokenMatches (presented: string, expected: string): boolean {
  return timingSafeEqual(digest(presented), digest(expected))
}

/** Throws 401 without credentials, 403 with wrong ones (or when no token is configured). */
export function requireEditor (adminToken: string | undefined) {
  return async function checkEditor (request: FastifyRequest): Promise<void> {
    const header = request.headers.authorization
    if (!header) throw new Errors.UNAUTHORIZED()
    const match = /^Bearer\s+(\S+)\s*$/i.exec(header)
    if (!match) throw new Errors.UNAUTHORIZED()
    if (!adminToken || !tokenMatches(match[1], adminToken)) throw new Errors.FORBIDDEN()
  }
}
