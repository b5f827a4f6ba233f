/**
 * The template engine: a tagged template that escapes every interpolation by
 * default. Only values that are already `SafeHtml` (the result of another
 * `html` template, or `raw()` for trusted HTML such as an editor's
 * `body_html`) pass through unchanged, so user text can never become markup
 * by accident: forgetting to escape is impossible, opting out is explicit.
 */
export class SafeHtml {
  readonly value: string
  constructor (value: string) { this.value = value }
  toString (): string { return this.value }
}

const ESCAPES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' }
const NEEDS_ESCAPE = /[&<>"']/
const ESCAPE_ALL = /[&<>"']/g

/** Escapes text for element content and quoted attribute values. */
export function escapeHtml (text: string): string {
  if (!NEEDS_ESCAPE.test(text)) return text
  return text.replace(ESCAPE_ALL, (c) => ESCAPES[c])
}

export type Html = SafeHtml
/** What may be interpolated: text is escaped; arrays are joined; null, undefined and false render nothing. */
export type Interpolation = SafeHtml | string | number | bigint | boolean | null | undefined | Interpolation[]

function render (value: Interpolation): string {
  if (value === null || value === undefined || value === false || value === true) return ''
  if (value instanceof SafeHtml) return value.value
  if (Array.isArray(value)) {
    let out = ''
    for (const v of value) out += render(v)
    return out
  }
  return escapeHtml(String(value))
}

export function html (strings: TemplateStringsArray, ...values: Interpolation[]): SafeHtml {
  let out = strings[0]
  for (let i = 0; i < values.length; i++) out += render(values[i]) + strings[i + 1]
  return new SafeHtml(out)
}

/** Trusted markup only (editor-authored `body_html`, our own constants). Never user input. */
export function raw (markup: string): SafeHtml {
  return new SafeHtml(markup)
}

/** Escapes for XML text (the sitemap); the same rules as HTML text. */
export const escapeXml = escapeHtml
