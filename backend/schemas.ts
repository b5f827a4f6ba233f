/**
 * Request schemas of the write API. Unknown fields are rejected (not
 * stripped), types are not coerced, and every string has sane bounds; free
 * text may not be blank or carry control characters.
 */
import { Type, type Static } from '@sinclair/typebox'

/** Not blank, no control characters other than tab/newline/carriage return. */
const TEXT = '^(?=[\\s\\S]*\\S)[^\\u0000-\\u0008\\u000B\\u000C\\u000E-\\u001F\\u007F]+$'
/** One line: no control characters at all. */
const LINE = '^(?=.*\\S)[^\\u0000-\\u001F\\u007F]+$'

const line = (max: number) => Type.String({ minLength: 1, maxLength: max, pattern: LINE })
const text = (max: number) => Type.String({ minLength: 1, maxLength: max, pattern: TEXT })

export const Slug = Type.String({ minLength: 1, maxLength: 80, pattern: '^[a-z0-9]+(?:-[a-z0-9]+)*$' })
export const Country = Type.String({ pattern: '^[A-Z]{2}$' })

/** One address, no display name, nothing that could end a header or add a recipient. */
export const Email = Type.String({ minLength: 3, maxLength: 254, pattern: '^[^\\s@<>()\\[\\],;:"]+@[^\\s@<>()\\[\\],;:"]+\\.[^\\s@<>()\\[\\],;:"]+$' })

export const CommentBody = Type.Object({
  news: Slug,
  author: line(80),
  body: text(2000)
}, { additionalProperties: false })

export const EventBody = Type.Object({
  organizer: line(120),
  email: Email,
  school: line(160),
  country: Country,
  city: line(100),
  expectedParticipants: Type.Integer({ minimum: 1, maximum: 100_000 }),
  eventDate: Type.String({ pattern: '^\\d{4}-\\d{2}-\\d{2}$' })
}, { additionalProperties: false })

export const CompletionBody = Type.Object({
  tutorial: Slug,
  name: line(80),
  country: Country,
  /** Optional: where the certificate link is sent; without it no e-mail is queued. */
  email: Type.Optional(Email)
}, { additionalProperties: false })

const IsoTime = Type.String({ pattern: '^\\d{4}-\\d{2}-\\d{2}T\\d{2}:\\d{2}(:\\d{2}(\\.\\d+)?)?(Z|[+-]\\d{2}:\\d{2})$' })

export const NewsBody = Type.Object({
  title: line(200),
  summary: Type.Optional(line(500)),
  bodyHtml: Type.String({ minLength: 1, maxLength: 200_000 }),
  author: line(120),
  publishedAt: Type.Optional(IsoTime)
}, { additionalProperties: false })

export const TutorialBody = Type.Object({
  title: line(200),
  summary: line(500),
  bodyHtml: Type.String({ minLength: 1, maxLength: 200_000 }),
  level: Type.Union([Type.Literal('beginner'), Type.Literal('intermediate'), Type.Literal('advanced')]),
  minAge: Type.Integer({ minimum: 3, maximum: 99 }),
  maxAge: Type.Integer({ minimum: 3, maximum: 99 }),
  minutes: Type.Integer({ minimum: 5, maximum: 600 }),
  partner: line(120),
  publishedAt: Type.Optional(IsoTime)
}, { additionalProperties: false })

export const SlugParams = Type.Object({ slug: Slug }, { additionalProperties: false })

export type CommentInput = Static<typeof CommentBody>
export type EventInput = Static<typeof EventBody>
export type CompletionInput = Static<typeof CompletionBody>
export type NewsInput = Static<typeof NewsBody>
export type TutorialInput = Static<typeof TutorialBody>

/**
 * Editor HTML is shown as-is on public pages, so it may not carry script:
 * no script-capable elements, no event-handler attributes, no javascript: URLs.
 * Returns the reason, or undefined when the HTML is acceptable.
 */
export function unsafeHtmlReason (html: string): string | undefined {
  // Browsers decode character references in attribute values and ignore
  // control characters and spaces inside a URL scheme: check what they see.
  const decoded = html
    .replace(/&#x([0-9a-f]+);?/gi, (_m, hex: string) => String.fromCodePoint(Math.min(Number.parseInt(hex, 16), 0x10ffff)))
    .replace(/&#(\d+);?/g, (_m, dec: string) => String.fromCodePoint(Math.min(Number(dec), 0x10ffff)))
    .replace(/&(colon|tab|newline);/gi, (_m, name: string) => ({ colon: ':', tab: '\t', newline: '\n' } as Record<string, string>)[name.toLowerCase()])
  if (/<\s*\/?\s*(script|iframe|object|embed|style|link|meta|base|form|frame|frameset|svg|math|template)\b/i.test(decoded)) return 'must not contain script-capable elements'
  // `<img/onerror=…>`: a slash separates attributes as well as a space does.
  if (/<[^>]+[\s/"']on[a-z]+\s*=/i.test(decoded)) return 'must not contain event-handler attributes'
  const schemes = decoded.replace(/[\u0000-\u0020]+/g, '')
  if (/(href|src|action|formaction|xlink:href|srcdoc)=["']?(javascript|vbscript|data):/i.test(schemes)) return 'must not contain javascript:, vbscript: or data: URLs'
  return undefined
}

/** A real calendar date within a sensible window around today. */
export function eventDateProblem (value: string, now: Date): string | undefined {
  const date = new Date(`${value}T00:00:00Z`)
  if (Number.isNaN(date.getTime()) || date.toISOString().slice(0, 10) !== value) return 'is not a real date'
  const day = 86_400_000
  if (date.getTime() < now.getTime() - 366 * day) return 'is more than a year in the past'
  if (date.getTime() > now.getTime() + 2 * 366 * day) return 'is more than two years ahead'
  return undefined
}
