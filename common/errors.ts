/**
 * The error catalog: every error a role answers with on purpose has a code,
 * a status and a message template here. Handlers throw these; each app has one
 * error handler that logs everything and shows messages only below 500.
 */
import createError, { type FastifyErrorConstructor } from '@fastify/error'

export type ErrorCode =
  | 'bad_request' | 'validation' | 'unauthorized' | 'forbidden' | 'not_found'
  | 'conflict' | 'payload_too_large' | 'unsupported_media_type' | 'rate_limited'
  | 'unavailable' | 'internal'

function make (code: string, message: string, status: number): FastifyErrorConstructor {
  return createError(code, message, status)
}

export const Errors = {
  BAD_REQUEST: make('FC_ERR_BAD_REQUEST', '%s', 400),
  VALIDATION: make('FC_ERR_VALIDATION', '%s', 400),
  INVALID_UTF8: make('FC_ERR_INVALID_UTF8', 'request body is not valid UTF-8', 400),
  UNAUTHORIZED: make('FC_ERR_UNAUTHORIZED', 'credentials required: send Authorization: Bearer <token>', 401),
  FORBIDDEN: make('FC_ERR_FORBIDDEN', 'these credentials may not do this', 403),
  NOT_FOUND: make('FC_ERR_NOT_FOUND', '%s', 404),
  IDEMPOTENCY_MISMATCH: make('FC_ERR_IDEMPOTENCY_MISMATCH', 'Idempotency-Key was already used with a different request', 409),
  WRITE_CONFLICT: make('FC_ERR_WRITE_CONFLICT', '%s', 409),
  PAYLOAD_TOO_LARGE: make('FC_ERR_PAYLOAD_TOO_LARGE', 'request body is larger than %s bytes', 413),
  UNSUPPORTED_MEDIA_TYPE: make('FC_ERR_UNSUPPORTED_MEDIA_TYPE', 'unsupported content type %s: send application/json', 415),
  RATE_LIMITED: make('FC_ERR_RATE_LIMITED', 'too many requests: retry after %s seconds', 429),
  REPEATED_CONTENT: make('FC_ERR_REPEATED_CONTENT', 'the same content was sent too often: retry after %s seconds', 429),
  UNAVAILABLE: make('FC_ERR_UNAVAILABLE', 'service temporarily unavailable: %s', 503)
} as const

const codeByStatus: Record<number, ErrorCode> = {
  400: 'bad_request', 401: 'unauthorized', 403: 'forbidden', 404: 'not_found', 409: 'conflict',
  413: 'payload_too_large', 415: 'unsupported_media_type', 429: 'rate_limited', 503: 'unavailable'
}

/** Postgres / network failures that mean "the database is not there right now". */
const UNAVAILABLE_ERRNO = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'ENOTFOUND', 'EHOSTUNREACH'])
const UNAVAILABLE_SQLSTATE = /^(08|53|57P0[1-3])/ // connection exceptions, insufficient resources, admin shutdown

export function isDatabaseUnavailable (err: unknown): boolean {
  const e = err as { code?: unknown, message?: unknown } | null
  if (!e) return false
  const code = typeof e.code === 'string' ? e.code : ''
  if (UNAVAILABLE_ERRNO.has(code) || UNAVAILABLE_SQLSTATE.test(code)) return true
  const message = typeof e.message === 'string' ? e.message : ''
  // pg reports pool checkout timeouts and dropped sockets only by message.
  return /timeout exceeded when trying to connect|Connection terminated|connection timeout|Client has encountered a connection error/i.test(message)
}

/**
 * Errors after which a connection is not given back to its pool: the
 * connection failed (no SQLSTATE: reset, timed out, closed), the server is
 * shutting down or ended the session (class 08, 57P01-57P03), or it answered
 * that it cannot write (25006: a primary demoted to a standby during a
 * failover; a fresh connection through the router reaches the new leader).
 */
export function isConnectionError (err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code
  return typeof code !== 'string' || !/^[0-9A-Z]{5}$/.test(code) || /^(08|57P0[1-3])/.test(code) || code === READ_ONLY
}

/** 25006 read_only_sql_transaction: the server this connection reaches is (now) a standby. */
const READ_ONLY = '25006'

/**
 * A write that failed this way has an unknown outcome and the database is
 * probably changing hands (a failover): the connection died or was refused
 * mid-flight, the server shut down, or it turned read-only. The same write
 * may be run again on a fresh connection, by its idempotency key.
 */
export function isFailover (err: unknown): boolean {
  if (isDatabaseUnavailable(err)) return true
  const e = err as { code?: unknown, message?: unknown } | null
  if (e?.code === READ_ONLY) return true
  // pg's client-side query_timeout: the server stopped answering mid-statement.
  return typeof e?.message === 'string' && /Query read timeout/i.test(e.message)
}

export function isStatementTimeout (err: unknown): boolean {
  return (err as { code?: unknown } | null)?.code === '57014'
}

export interface HttpFailure {
  status: number
  code: ErrorCode
  /** Safe to show: internals of a 5xx are never put here. */
  message: string
  retryAfter?: number
}

/** Maps anything thrown in a request to what the client may see. */
export function classifyError (err: unknown, retryAfterSeconds = 5): HttpFailure {
  if (isFailover(err) || isStatementTimeout(err)) {
    return { status: 503, code: 'unavailable', message: 'the database is unavailable; retry shortly', retryAfter: retryAfterSeconds }
  }
  const e = err as { statusCode?: number, code?: string, message?: string, validation?: unknown, retryAfter?: number }
  const status = typeof e?.statusCode === 'number' && e.statusCode >= 400 && e.statusCode < 600 ? e.statusCode : 500
  if (status >= 500) {
    if (status === 503) return { status, code: 'unavailable', message: 'service temporarily unavailable; retry shortly', retryAfter: e.retryAfter ?? retryAfterSeconds }
    return { status, code: 'internal', message: 'internal error' }
  }
  let code = codeByStatus[status] ?? 'bad_request'
  if (e.code === 'FC_ERR_VALIDATION' || e.validation) code = 'validation'
  const failure: HttpFailure = { status, code, message: e.message ?? 'bad request' }
  if (status === 429) failure.retryAfter = e.retryAfter ?? retryAfterSeconds
  return failure
}
