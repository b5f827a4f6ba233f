/**
 * PURGE and BAN: one function answers both, whichever way the request came
 * in (node's parser for PURGE, the raw head for BAN): authenticate, turn the
 * request into a bus event, apply it on this node, publish it so every node
 * applies it (design §2.3, §2.9).
 */
import type { Bus, BusEvent } from '../common/bus.js'
import { parseSurrogateKeys } from '../common/surrogate-keys.js'
import { validateBan } from './ban.js'
import { authorize } from './auth.js'
import { applyEvent, type ApplyDeps } from './invalidation.js'
import type { Logger } from './engine.js'

/** Turns an admin request (PURGE/BAN with their headers) into the bus event it stands for. */
export function eventFromRequest (method: string, url: string, headers: Record<string, string | string[] | undefined>): BusEvent {
  const one = (name: string) => { const v = headers[name]; return Array.isArray(v) ? v.join(' ') : v }
  const soft = /^(1|true|yes)$/i.test(one('soft') ?? '')
  const banUrl = one('ban-url')
  if (method === 'BAN' || banUrl !== undefined) {
    if (!banUrl) throw new Error('BAN needs a Ban-Url header with a regular expression')
    validateBan(banUrl) // fail here with a 400, not later on every node
    return { kind: 'ban', pattern: banUrl }
  }
  const keyHeader = one('surrogate-key')
  if (keyHeader !== undefined) {
    const keys = parseSurrogateKeys(keyHeader)
    if (keys.length === 0) throw new Error('Surrogate-Key names no valid key')
    return soft ? { kind: 'keys', keys, soft } : { kind: 'keys', keys }
  }
  if (!url.startsWith('/')) throw new Error('PURGE needs a path')
  return soft ? { kind: 'url', path: url, soft } : { kind: 'url', path: url }
}

export interface PurgeDeps extends ApplyDeps {
  bus: Bus
  token: string | undefined
  logger: Logger
}

export interface PurgeAnswer {
  status: number
  body: string
  type: string
  headers?: Record<string, string>
}

const text = (status: number, body: string, headers?: Record<string, string>): PurgeAnswer => ({ status, body, type: 'text/plain; charset=utf-8', headers })
const json = (status: number, value: object, headers?: Record<string, string>): PurgeAnswer => ({ status, body: JSON.stringify(value) + '\n', type: 'application/json', headers })

/**
 * Answers one PURGE or BAN. Nothing is looked at before the credentials
 * (design §2.9: without them 401/403 and nothing changes). Applied here
 * first, so the node that answered 200 no longer serves what it removed,
 * then published; a bus that is down is a 503 saying the purge reached this
 * node only.
 */
export async function answerInvalidation (deps: PurgeDeps, method: string, target: string, headers: Record<string, string | string[] | undefined>): Promise<PurgeAnswer> {
  const one = headers.authorization
  const auth = authorize(Array.isArray(one) ? one[0] : one, deps.token)
  if (auth === 'missing') return text(401, 'credentials required: send Authorization: Bearer <token>\n', { 'www-authenticate': 'Bearer' })
  if (auth === 'wrong') return text(403, 'these credentials may not do this\n')
  let event: BusEvent
  try {
    event = eventFromRequest(method, target, headers)
  } catch (err) {
    return text(400, (err as Error).message + '\n')
  }
  const touched = applyEvent(deps, event)
  try {
    const id = await deps.bus.publish(event)
    return json(200, { status: 'ok', event, touched, id })
  } catch (err) {
    deps.logger.error({ err: (err as Error).message }, 'invalidation applied locally but not published')
    return json(503, { status: 'partial', message: 'applied on this node only: the invalidation bus is unavailable; retry', event, touched }, { 'retry-after': '1' })
  }
}
