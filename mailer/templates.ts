/**
 * The messages, as data in, text out: a plain-text part and an HTML part for
 * each kind. Every value comes from a visitor (a school's name, a pupil's
 * name), so every value is escaped in the HTML part and the subject is one
 * line with no control characters (no header can be smuggled in).
 */
import { countryName } from '../common/countries.js'
import type { MailKind } from '../common/db-types.js'

export interface RenderedMessage {
  subject: string
  text: string
  html: string
}

export interface SiteLinks {
  /** Public base URL without a trailing slash, e.g. https://hourofcode.example */
  siteUrl: string
}

export class TemplateError extends Error {
  constructor (message: string) {
    super(message)
    this.name = 'TemplateError'
  }
}

const HTML_ESCAPES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' }

/** Text → HTML text or attribute value (quoted). */
export function escapeHtml (value: unknown): string {
  return String(value).replace(/[&<>"']/g, (c) => HTML_ESCAPES[c])
}

/** One header line: controls (CR, LF, TAB, C1) become spaces, runs of space one, at most 200 characters. */
export function headerText (value: string): string {
  return value.replace(/[\u0000-\u001F\u007F-\u009F\u2028\u2029]+/g, ' ').replace(/ {2,}/g, ' ').trim().slice(0, 200)
}

function str (payload: Record<string, unknown>, key: string): string {
  const v = payload[key]
  if (typeof v === 'string' && v.length > 0) return v
  if (typeof v === 'number' && Number.isFinite(v)) return String(v)
  throw new TemplateError(`payload has no ${key}`)
}

/** `2026-12-08` → `Tuesday, 8 December 2026` (the date as the organizer typed it: no time zone shifts it). */
export function longDate (iso: string): string {
  const date = new Date(`${iso}T00:00:00Z`)
  if (Number.isNaN(date.getTime())) return iso
  return new Intl.DateTimeFormat('en-GB', { weekday: 'long', day: 'numeric', month: 'long', year: 'numeric', timeZone: 'UTC' }).format(date)
}

function page (title: string, body: string): string {
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width"><title>${escapeHtml(title)}</title></head>
<body style="font-family: system-ui, sans-serif; line-height: 1.5; color: #1b1b1b; max-width: 36em; margin: 0 auto; padding: 1em">
${body}
<p style="color: #666; font-size: 0.85em">You receive this message because this address was given on our site. It is the only one we send about it.</p>
</body></html>
`
}

function eventConfirmation (payload: Record<string, unknown>, links: SiteLinks): RenderedMessage {
  const school = str(payload, 'school')
  const organizer = str(payload, 'organizer')
  const city = str(payload, 'city')
  const country = str(payload, 'country')
  const date = longDate(str(payload, 'eventDate'))
  const participants = Number(str(payload, 'expectedParticipants'))
  const where = `${city}, ${countryName(country)}`
  const listUrl = `${links.siteUrl}/events?country=${encodeURIComponent(country)}#event-${encodeURIComponent(str(payload, 'eventId'))}`
  const people = `${participants.toLocaleString('en-US')} ${participants === 1 ? 'participant' : 'participants'}`
  const subject = headerText(`Your Hour of Code event at ${school} is registered`)
  const text = [
    `Hello ${organizer},`,
    '',
    'thank you for registering your Hour of Code event. These are the details we have:',
    '',
    `  School or organization: ${school}`,
    `  Where: ${where}`,
    `  Date: ${date}`,
    `  Expected participants: ${people}`,
    '',
    `Your event is listed here: ${listUrl}`,
    '',
    'Good luck, and have fun!',
    ''
  ].join('\n')
  const html = page(subject, `<p>Hello ${escapeHtml(organizer)},</p>
<p>thank you for registering your Hour of Code event. These are the details we have:</p>
<table role="presentation" style="border-collapse: collapse">
<tr><th align="left" style="padding: 0.2em 1em 0.2em 0">School or organization</th><td>${escapeHtml(school)}</td></tr>
<tr><th align="left" style="padding: 0.2em 1em 0.2em 0">Where</th><td>${escapeHtml(where)}</td></tr>
<tr><th align="left" style="padding: 0.2em 1em 0.2em 0">Date</th><td>${escapeHtml(date)}</td></tr>
<tr><th align="left" style="padding: 0.2em 1em 0.2em 0">Expected participants</th><td>${escapeHtml(people)}</td></tr>
</table>
<p><a href="${escapeHtml(listUrl)}">See your event on the list</a></p>
<p>Good luck, and have fun!</p>`)
  return { subject, text, html }
}

function certificate (payload: Record<string, unknown>, links: SiteLinks): RenderedMessage {
  const name = str(payload, 'name')
  const tutorial = str(payload, 'tutorialTitle')
  const url = `${links.siteUrl}/certificates/${encodeURIComponent(str(payload, 'certificateId'))}`
  const subject = headerText(`Your Hour of Code certificate, ${name}`)
  const text = [
    `Congratulations, ${name}!`,
    '',
    `You completed "${tutorial}". Your certificate is here, ready to print or share:`,
    '',
    `  ${url}`,
    ''
  ].join('\n')
  const html = page(subject, `<p>Congratulations, ${escapeHtml(name)}!</p>
<p>You completed “${escapeHtml(tutorial)}”. Your certificate is ready to print or share:</p>
<p><a href="${escapeHtml(url)}" style="display: inline-block; padding: 0.5em 1em; background: #00adbc; color: #fff; text-decoration: none; border-radius: 4px">Open my certificate</a></p>
<p style="font-size: 0.9em">Or copy this address: ${escapeHtml(url)}</p>`)
  return { subject, text, html }
}

const TEMPLATES: Record<MailKind, (payload: Record<string, unknown>, links: SiteLinks) => RenderedMessage> = {
  'event-confirmation': eventConfirmation,
  certificate
}

/** The message of one queued row; a TemplateError when its payload cannot make one (a permanent failure). */
export function renderMessage (kind: string, payload: unknown, links: SiteLinks): RenderedMessage {
  const template = TEMPLATES[kind as MailKind]
  if (!Object.hasOwn(TEMPLATES, kind) || template === undefined) throw new TemplateError(`no template for kind ${JSON.stringify(kind)}`)
  if (payload === null || typeof payload !== 'object' || Array.isArray(payload)) throw new TemplateError('payload is not an object')
  return template(payload as Record<string, unknown>, links)
}
