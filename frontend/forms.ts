/**
 * Form posts: check the origin, validate lightly (the backend validates for
 * real), forward with an idempotency key derived from the form instance, then
 * Post/Redirect/Get. Whatever goes wrong, the visitor gets their form back
 * with what they typed and a message, never a silent loss.
 *
 * A form's identity (design §2.2): the page is cached and shared, so the form
 * in it carries an empty `form_nonce` that form-nonce.js fills per visit. A
 * post without one (no JavaScript, or a script that did not run) is never
 * written on a key that could merge two visitors: the visitor gets their form
 * back, uncached, with a nonce made by the server, and one more press sends
 * it. Every form shown back to one visitor keeps its identity, so a retry
 * after a failure whose outcome is unknown is the same submission.
 */
import { randomBytes } from 'node:crypto'
import type { FastifyReply, FastifyRequest } from 'fastify'
import { isCountryCode } from '../common/countries.js'
import { BackendUnavailableError, submissionKey, type BackendClient } from './backend-client.js'
import { checkSameOrigin } from './security.js'
import { sendPrivateHtml } from './page-render.js'
import { NO_STORE } from './cache-headers.js'
import type { SafeHtml } from './html.js'
import { FORM_NONCE, type FieldErrors, type FormState } from './views/components.js'
import { InvalidFormValue } from './form-body.js'

export interface FieldRule {
  label: string
  min?: number
  max: number
  /** Extra check on the trimmed value; returns a message when it fails. */
  check?: (value: string) => string | undefined
}

export type FormRules = Record<string, FieldRule>

const chars = (s: string) => [...s].length

export const EMAIL = /^[^\s@]{1,64}@[^\s@]{1,255}\.[^\s@]{2,}$/
const DATE = /^(\d{4})-(\d{2})-(\d{2})$/

export function isIsoDate (s: string): boolean {
  const m = DATE.exec(s)
  if (!m) return false
  const d = new Date(`${s}T00:00:00Z`)
  return !Number.isNaN(d.getTime()) && d.toISOString().slice(0, 10) === s
}

export const countryRule: FieldRule = { label: 'Country', min: 1, max: 2, check: (v) => isCountryCode(v) ? undefined : 'Choose a country from the list.' }

export const COMMENT_RULES: FormRules = {
  author: { label: 'Your name', min: 1, max: 80 },
  body: { label: 'Comment', min: 1, max: 2000 }
}

export const COMPLETION_RULES: FormRules = {
  name: { label: 'Name', min: 1, max: 80 },
  country: countryRule,
  // Optional: left empty, no e-mail is sent.
  email: { label: 'Email', min: 0, max: 254, check: (v) => EMAIL.test(v) ? undefined : 'Enter an email address like name@school.org, or leave it empty.' }
}

export const EVENT_RULES: FormRules = {
  organizer: { label: 'Organizer name', min: 1, max: 120 },
  email: { label: 'Email', min: 3, max: 254, check: (v) => EMAIL.test(v) ? undefined : 'Enter an email address like name@school.org.' },
  school: { label: 'School or organization', min: 1, max: 160 },
  country: countryRule,
  city: { label: 'City', min: 1, max: 100 },
  expectedParticipants: { label: 'Expected participants', min: 1, max: 6, check: (v) => /^\d+$/.test(v) && Number(v) >= 1 && Number(v) <= 100_000 ? undefined : 'Enter a whole number from 1 to 100,000.' },
  eventDate: { label: 'Date', min: 10, max: 10, check: (v) => isIsoDate(v) ? undefined : 'Enter a date (YYYY-MM-DD).' }
}

/**
 * A write that got no answer, or a 503 (its database went away mid-commit
 * and stayed away past the backend's retries), may or may not be stored: the
 * form keeps its identity, so sending it again stores it once, or finds it.
 */
const UNCONFIRMED = 'We could not confirm that this was saved; sending it again saves it once, never twice.'

export interface ParsedForm { values: Record<string, string>, errors: FieldErrors, unknown: string[] }

/** Trims every known field and checks lengths and formats; unknown fields are reported, not forwarded. */
export function parseForm (body: unknown, rules: FormRules): ParsedForm {
  const values: Record<string, string> = {}
  const errors: FieldErrors = {}
  const unknown: string[] = []
  const input = body !== null && typeof body === 'object' ? body as Record<string, unknown> : {}
  // Own properties only: `constructor` or `__proto__` is not a field of any form.
  for (const key of Object.keys(input)) if (!Object.hasOwn(rules, key)) unknown.push(key)
  for (const [name, rule] of Object.entries(rules)) {
    const raw = input[name]
    if (raw instanceof InvalidFormValue) {
      // Named beside its field; what the visitor typed comes back, bad characters shown as �.
      values[name] = raw.shown.trim()
      errors[name] = `${rule.label} ${raw.problem}. Please retype it.`
      continue
    }
    // A repeated field arrives as an array: that is not something our forms send.
    const value = typeof raw === 'string' ? raw.replace(/\r\n/g, '\n').trim() : ''
    values[name] = value
    if (raw !== undefined && typeof raw !== 'string') { errors[name] = `${rule.label}: send one value.`; continue }
    if (chars(value) < (rule.min ?? 0)) { errors[name] = value === '' ? `${rule.label} is required.` : `${rule.label} is too short.`; continue }
    if (chars(value) > rule.max) { errors[name] = `${rule.label} must be at most ${rule.max} characters (now ${chars(value)}).`; continue }
    const problem = value === '' ? undefined : rule.check?.(value)
    if (problem) errors[name] = problem
  }
  return { values, errors, unknown }
}

export interface Reshow {
  (status: number, form: FormState): Promise<SafeHtml | undefined>
}

/** A nonce as form-nonce.js (hex) or `newFormNonce` (base64url) makes it: 128 bits at least. */
const NONCE = /^[A-Za-z0-9_-]{22,64}$/

/**
 * Hidden field of forms cached before the nonce existed: accepted and ignored,
 * so such a page still posts (it takes the no-JavaScript path).
 */
const LEGACY_FORM_STAMP = 'form_at'

/** A form identity made by the server, for a form it shows to one visitor only. */
export function newFormNonce (): string {
  return randomBytes(16).toString('base64url')
}

export interface ForwardOptions {
  /** What the form does, e.g. `comment:<slug>` (part of the idempotency key). */
  action: string
  rules: FormRules
  /** Backend path, e.g. `/v1/comments`. */
  path: string
  toPayload: (values: Record<string, string>) => Record<string, unknown>
  /** Where the 303 goes (the page that shows the write); `rev` is appended by `forwardForm`. */
  location: (answer: Record<string, unknown>) => { path: string, hash?: string }
  /** Renders the page with the form (values, errors, message); undefined when the thing it belongs to is gone (→ 404). */
  reshow: Reshow
  backend: BackendClient
  allowedOrigins: readonly string[]
  notFound: () => Promise<unknown>
}

async function reshowOr404 (reply: FastifyReply, opts: ForwardOptions, status: number, form: Parameters<Reshow>[1]) {
  const page = await opts.reshow(status, form)
  if (!page) return opts.notFound()
  return sendPrivateHtml(reply, status, page)
}

export async function forwardForm (request: FastifyRequest, reply: FastifyReply, opts: ForwardOptions) {
  const origin = checkSameOrigin(request, { allowedOrigins: opts.allowedOrigins })
  if (!origin.ok) {
    request.log.warn({ reason: origin.reason }, 'cross-site form post refused')
    const err = new Error('This form can only be sent from our own pages. Please go back, reload the page and try again.') as Error & { statusCode: number }
    err.statusCode = 403
    throw err
  }
  const type = String(request.headers['content-type'] ?? '').split(';')[0].trim().toLowerCase()
  if (type !== 'application/x-www-form-urlencoded') {
    const err = new Error('Forms are sent as application/x-www-form-urlencoded.') as Error & { statusCode: number }
    err.statusCode = 415
    throw err
  }
  // The form's identity keys the write; neither it nor a legacy stamp is a field for the backend.
  const { [FORM_NONCE]: nonceField, [LEGACY_FORM_STAMP]: _legacyStamp, ...fields } = (request.body !== null && typeof request.body === 'object' ? request.body : {}) as Record<string, unknown>
  const sent = typeof nonceField === 'string' && NONCE.test(nonceField) ? nonceField : undefined
  // The form shown back keeps this instance's identity (or gets one, if it had none).
  const nonce = sent ?? newFormNonce()
  const form = parseForm(fields, opts.rules)
  if (form.unknown.length > 0) {
    return reshowOr404(reply, opts, 400, { values: form.values, nonce, message: `The form contained fields we do not know (${form.unknown.slice(0, 5).join(', ')}). Please use the form below.` })
  }
  if (Object.keys(form.errors).length > 0) {
    return reshowOr404(reply, opts, 400, { values: form.values, errors: form.errors, nonce, message: 'Please correct the highlighted fields.' })
  }
  if (sent === undefined) {
    // No identity: nothing here tells this visitor from another who typed the
    // same words into the same cached page, so nothing is written yet. The
    // form comes back to this visitor only, uncached, with an identity of its
    // own; pressing the button again sends it (once, however often pressed).
    return reshowOr404(reply, opts, 200, { values: form.values, nonce, message: 'Almost done: please check what you typed and press the button again to send it.' })
  }
  const idempotencyKey = submissionKey({ action: opts.action, fields: form.values, nonce })
  let res
  try {
    res = await opts.backend.post(opts.path, opts.toPayload(form.values), { idempotencyKey, clientIp: request.ip })
  } catch (err) {
    if (!(err instanceof BackendUnavailableError)) throw err
    request.log.error({ err: err.cause ?? err }, 'no backend acknowledged a form post')
    reply.header('retry-after', String(err.retryAfter))
    return reshowOr404(reply, opts, 503, { values: form.values, nonce, message: `${UNCONFIRMED} Your text is still below: please send it again in ${err.retryAfter} seconds.` })
  }
  const answer = (res.body !== null && typeof res.body === 'object' ? res.body : {}) as Record<string, unknown>
  if (res.status === 201 || res.status === 200) {
    const target = opts.location(answer)
    const lsn = res.headers['x-commit-lsn']
    const rev = typeof lsn === 'string' && /^[0-9A-Fa-f]{1,8}\/[0-9A-Fa-f]{1,8}$/.test(lsn) ? lsn : undefined
    const sep = target.path.includes('?') ? '&' : '?'
    const location = `${target.path}${rev ? `${sep}rev=${rev}` : ''}${target.hash ? `#${target.hash}` : ''}`
    return reply.code(303).header('location', location).header('cache-control', NO_STORE).send()
  }
  const message = typeof answer.message === 'string' ? answer.message : undefined
  const retryAfter = res.headers['retry-after']
  if (res.status === 404) return opts.notFound()
  if (res.status === 400 || res.status === 413 || res.status === 415) {
    const field = typeof answer.field === 'string' && answer.field in opts.rules ? answer.field : undefined
    let text = message ?? 'This was not accepted.'
    // The backend names its fields ("eventDate is …"); the visitor knows them by their labels.
    if (field && text.startsWith(field)) text = opts.rules[field].label + text.slice(field.length)
    if (!/[.!?]$/.test(text)) text += '.'
    return reshowOr404(reply, opts, 400, { values: form.values, nonce, errors: field ? { [field]: capitalize(text) } : undefined, message: field ? 'Please correct the highlighted fields.' : capitalize(text) })
  }
  if (res.status === 429 || res.status === 503) {
    if (typeof retryAfter === 'string') reply.header('retry-after', retryAfter)
    const wait = typeof retryAfter === 'string' ? `${retryAfter} seconds` : 'a minute'
    const why = res.status === 429 ? 'You have sent a lot in a short time.' : UNCONFIRMED
    return reshowOr404(reply, opts, res.status, { values: form.values, nonce, message: `${why} Your text is still below: please try again in ${wait}.` })
  }
  if (res.status === 409) {
    return reshowOr404(reply, opts, 409, { values: form.values, nonce, message: 'This looks like a changed copy of something you just sent. Please check the page and send it again.' })
  }
  request.log.error({ status: res.status, backend: res.origin }, 'unexpected backend answer to a form post')
  reply.header('retry-after', '10')
  return reshowOr404(reply, opts, 503, { values: form.values, nonce, message: 'We could not save this right now, so nothing was saved. Your text is still below: please try again shortly.' })
}

function capitalize (s: string): string { return s.charAt(0).toUpperCase() + s.slice(1) }
