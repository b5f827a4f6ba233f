/** Small pieces the pages share: dates, pagination, form fields, cards. */
import { html, type Html } from '../html.js'
import { COUNTRIES } from '../../common/countries.js'
import type { ArticleCard, TutorialCard } from '../repositories.js'

const dateFormat = new Intl.DateTimeFormat('en', { dateStyle: 'long', timeZone: 'UTC' })
const numberFormat = new Intl.NumberFormat('en')

export function date (d: Date): Html {
  return html`<time datetime="${d.toISOString()}">${dateFormat.format(d)}</time>`
}
export function formatDate (d: Date): string { return dateFormat.format(d) }
export function formatNumber (n: number): string { return numberFormat.format(n) }

export function plural (n: number, one: string, many: string): string {
  return `${formatNumber(n)} ${n === 1 ? one : many}`
}

/** Countries by English name, for select boxes. */
export const COUNTRY_OPTIONS: ReadonlyArray<[string, string]> = Object.entries(COUNTRIES).sort((a, b) => a[1].localeCompare(b[1], 'en'))

export interface PageLinks { page: number, pages: number, href: (page: number) => string, label?: string }

export function pagination ({ page, pages, href, label }: PageLinks): Html {
  if (pages <= 1) return html``
  const around: number[] = []
  for (let p = Math.max(1, page - 2); p <= Math.min(pages, page + 2); p++) around.push(p)
  return html`<nav class="pagination" aria-label="${label ?? 'Pages'}">
  ${page > 1 ? html`<a rel="prev" href="${href(page - 1)}">← Newer</a>` : html`<span class="disabled">← Newer</span>`}
  <ol>
    ${around[0] > 1 ? html`<li><a href="${href(1)}">1</a></li>${around[0] > 2 ? html`<li class="gap">…</li>` : ''}` : ''}
    ${around.map((p) => p === page ? html`<li><span aria-current="page">${p}</span></li>` : html`<li><a href="${href(p)}">${p}</a></li>`)}
    ${around[around.length - 1] < pages ? html`${around[around.length - 1] < pages - 1 ? html`<li class="gap">…</li>` : ''}<li><a href="${href(pages)}">${pages}</a></li>` : ''}
  </ol>
  ${page < pages ? html`<a rel="next" href="${href(page + 1)}">Older →</a>` : html`<span class="disabled">Older →</span>`}
</nav>`
}

export type FieldErrors = Partial<Record<string, string>>

export interface FieldOptions {
  name: string
  label: string
  value?: string
  errors?: FieldErrors
  type?: string
  hint?: string
  required?: boolean
  maxlength?: number
  min?: number
  max?: number
  autocomplete?: string
  /** Prefix of element ids, when a page has several forms. */
  form: string
}

function describedBy (id: string, hint: boolean, error: boolean): Html | string {
  const ids = [hint ? `${id}-hint` : '', error ? `${id}-error` : ''].filter(Boolean).join(' ')
  return ids ? html` aria-describedby="${ids}"` : ''
}

export function fieldError (id: string, error: string | undefined): Html {
  return error ? html`<p class="field-error" id="${id}-error">${error}</p>` : html``
}

export function field (o: FieldOptions): Html {
  const id = `${o.form}-${o.name}`
  const error = o.errors?.[o.name]
  return html`<div class="field${error ? ' has-error' : ''}">
  <label for="${id}">${o.label}${o.required === false ? html` <span class="optional">(optional)</span>` : ''}</label>
  ${o.hint ? html`<p class="hint" id="${id}-hint">${o.hint}</p>` : ''}
  ${fieldError(id, error)}
  <input id="${id}" name="${o.name}" type="${o.type ?? 'text'}" value="${o.value ?? ''}"${o.required !== false ? html` required` : ''}${o.maxlength ? html` maxlength="${o.maxlength}"` : ''}${o.min !== undefined ? html` min="${o.min}"` : ''}${o.max !== undefined ? html` max="${o.max}"` : ''}${o.autocomplete ? html` autocomplete="${o.autocomplete}"` : ''}${error ? html` aria-invalid="true"` : ''}${describedBy(id, Boolean(o.hint), Boolean(error))}>
</div>`
}

export function textarea (o: FieldOptions & { rows?: number }): Html {
  const id = `${o.form}-${o.name}`
  const error = o.errors?.[o.name]
  return html`<div class="field${error ? ' has-error' : ''}">
  <label for="${id}">${o.label}</label>
  ${o.hint ? html`<p class="hint" id="${id}-hint">${o.hint}</p>` : ''}
  ${fieldError(id, error)}
  <textarea id="${id}" name="${o.name}" rows="${o.rows ?? 4}"${o.required !== false ? html` required` : ''}${o.maxlength ? html` maxlength="${o.maxlength}"` : ''}${error ? html` aria-invalid="true"` : ''}${describedBy(id, Boolean(o.hint), Boolean(error))}>${o.value ?? ''}</textarea>
</div>`
}

export function countrySelect (o: FieldOptions): Html {
  const id = `${o.form}-${o.name}`
  const error = o.errors?.[o.name]
  return html`<div class="field${error ? ' has-error' : ''}">
  <label for="${id}">${o.label}</label>
  ${fieldError(id, error)}
  <select id="${id}" name="${o.name}" required autocomplete="country"${error ? html` aria-invalid="true"` : ''}${describedBy(id, false, Boolean(error))}>
    <option value="">Choose a country…</option>
    ${COUNTRY_OPTIONS.map(([code, name]) => html`<option value="${code}"${o.value === code ? html` selected` : ''}>${name}</option>`)}
  </select>
</div>`
}

/** The summary at the top of a form that did not go through (WCAG 3.3.1). */
export function formAlert (message: string | undefined, errors: FieldErrors | undefined, form: string): Html {
  const fields = Object.entries(errors ?? {}).filter(([, v]) => v)
  if (!message && fields.length === 0) return html``
  return html`<div class="alert alert-error" role="alert">
  <p><strong>${message ?? 'Please check the form.'}</strong></p>
  ${fields.length > 0 ? html`<ul>${fields.map(([name, text]) => html`<li><a href="#${form}-${name}">${text}</a></li>`)}</ul>` : ''}
</div>`
}

const LEVEL_LABEL: Record<string, string> = { beginner: 'Beginner', intermediate: 'Intermediate', advanced: 'Advanced' }
export function levelLabel (level: string): string { return LEVEL_LABEL[level] ?? level }

export function ages (min: number, max: number): string { return max >= 99 ? `Ages ${min}+` : `Ages ${min}–${max}` }

export function tutorialCard (t: TutorialCard): Html {
  return html`<li class="card tutorial-card level-${t.level}">
  <div class="card-tags"><span class="tag tag-${t.level}">${levelLabel(t.level)}</span><span class="tag">${ages(t.minAge, t.maxAge)}</span><span class="tag">${t.minutes} min</span></div>
  <h3><a href="/tutorials/${encodeURIComponent(t.slug)}">${t.title}</a></h3>
  <p>${t.summary}</p>
  <p class="card-meta">by ${t.partner}</p>
</li>`
}

export function articleItem (a: ArticleCard): Html {
  return html`<li class="article-item">
  <p class="meta">${date(a.publishedAt)} · ${a.author}</p>
  <h3><a href="/news/${encodeURIComponent(a.slug)}">${a.title}</a></h3>
  <p>${a.summary}</p>
</li>`
}

/** A form as shown: what was typed, what is wrong, and the form instance's identity. */
export interface FormState {
  values: Record<string, string>
  errors?: FieldErrors
  message?: string
  /** Set on a form rendered for one visitor only (never on a cached page). */
  nonce?: string
}

/** Name of the hidden field that tells one visitor's form from another's (see submissionKey). */
export const FORM_NONCE = 'form_nonce'

/**
 * The form instance's identity. A cached page carries an empty field that
 * form-nonce.js fills with a random value per visit (pages that show a form
 * load that script); a form re-shown to one visitor (never cached) carries a
 * value made by the server, so it also works without JavaScript.
 */
export function formNonce (value?: string): Html {
  return html`<input type="hidden" name="${FORM_NONCE}" value="${value ?? ''}">`
}

/** The script that fills `formNonce` fields; every page with a form loads it. */
export const FORM_SCRIPT = 'form-nonce.js'
