/**
 * Bearer credentials, one check for every role: `Authorization: Bearer
 * <token>` compared in constant time (both sides hashed first, so neither the
 * token's length nor a guess's leaks through timing).
 */
import { createHash, timingSafeEqual } from 'node:crypto'
import type { FastifyRequest } from 'fastify'
import { Errors } from './errors.js'

export type AuthResult = 'ok' | 'missing' | 'wrong'

const digest = (s: string) => createHash('sha256').update(s).digest()

function tokenMatches (presented: string, expected: string): boolean {
  return timingSafeEqual(digest(presented), digest(expected))
}

/** 'missing' without a bearer credential; 'wrong' with another one, or when no token is configured (the door is shut). */
export function authorize (authorization: string | undefined, token: string | undefined): AuthResult {
  if (!authorization) return 'missing'
  const m = /^Bearer\s+(\S+)\s*$/i.exec(authorization)
  if (!m) return 'missing'
  if (!token) return 'wrong'
  return tokenMatches(m[1], token) ? 'ok' : 'wrong'
}

/** A Fastify onRequest hook: 401 without credentials, 403 with wrong ones (or when no token is configured). */
export function requireBearer (token: string | undefined) {
  return async function checkBearer (request: FastifyRequest): Promise<void> {
    const auth = authorize(request.headers.authorization, token)
    if (auth === 'missing') throw new Errors.UNAUTHORIZED()
    if (auth === 'wrong') throw new Errors.FORBIDDEN()
  }
}
