import { html, raw, type Html } from '../html.js'
import { LEVELS, type Page, type Tutorial, type TutorialCard, type TutorialFilter } from '../repositories.js'
import { ages, countrySelect, field, formAlert, formatNumber, levelLabel, pagination, tutorialCard, type FieldErrors, formNonce, FORM_SCRIPT, type FormState } from './components.js'
import { layout, type AssetUrls } from './layout.js'

export const AGE_CHOICES = [4, 6, 8, 10, 12, 14, 16, 18] as const
export const LENGTH_CHOICES = [15, 30, 45, 60, 90] as const

export function tutorialsQuery (filter: TutorialFilter, page: number): string {
  const q = new URLSearchParams()
  if (filter.level) q.set('level', filter.level)
  if (filter.age !== undefined) q.set('age', String(filter.age))
  if (filter.length !== undefined) q.set('length', String(filter.length))
  if (page > 1) q.set('page', String(page))
  const s = q.toString()
  return s ? `?${s}` : ''
}

export function tutorialsPage (assets: AssetUrls, data: { filter: TutorialFilter, page: number, pageSize: number, result: Page<TutorialCard> }): Html {
  const { filter, page, result } = data
  const pages = Math.max(1, Math.ceil(result.total / data.pageSize))
  const filtered = filter.level !== undefined || filter.age !== undefined || filter.length !== undefined
  return layout(assets, { title: page > 1 ? `Tutorials (page ${page})` : 'Tutorials', section: 'tutorials', description: 'Hour of Code tutorials for every age and level.' }, html`
<div class="page-head">
  <h1>Tutorials</h1>
  <p class="lead">Self-guided activities that work in any modern browser. Filter by level, age and length.</p>
</div>
<form class="filters" method="get" action="/tutorials" role="search" aria-label="Filter tutorials">
  <div class="field">
    <label for="f-level">Level</label>
    <select id="f-level" name="level">
      <option value="">Any level</option>
      ${LEVELS.map((l) => html`<option value="${l}"${filter.level === l ? html` selected` : ''}>${levelLabel(l)}</option>`)}
    </select>
  </div>
  <div class="field">
    <label for="f-age">Student age</label>
    <select id="f-age" name="age">
      <option value="">Any age</option>
      ${AGE_CHOICES.map((a) => html`<option value="${a}"${filter.age === a ? html` selected` : ''}>${a} years</option>`)}
    </select>
  </div>
  <div class="field">
    <label for="f-length">Length</label>
    <select id="f-length" name="length">
      <option value="">Any length</option>
      ${LENGTH_CHOICES.map((m) => html`<option value="${m}"${filter.length === m ? html` selected` : ''}>Up to ${m} minutes</option>`)}
    </select>
  </div>
  <div class="filter-actions"><button class="button" type="submit">Show tutorials</button>${filtered ? html` <a href="/tutorials">Clear filters</a>` : ''}</div>
</form>
<p class="result-count" role="status">${result.total === 0 ? 'No tutorial matches these filters yet.' : `${formatNumber(result.total)} tutorial${result.total === 1 ? '' : 's'}`}</p>
<ul class="cards">${result.items.map(tutorialCard)}</ul>
${pagination({ page, pages, href: (p) => `/tutorials${tutorialsQuery(filter, p)}`, label: 'Tutorial pages' })}
`)
}

export type CompletionForm = FormState

export function tutorialPage (assets: AssetUrls, t: Tutorial, form: CompletionForm = { values: {} }): Html {
  return layout(assets, { title: t.title, section: 'tutorials', description: t.summary, canonicalPath: `/tutorials/${encodeURIComponent(t.slug)}`, scripts: [FORM_SCRIPT] }, html`
<nav class="breadcrumbs" aria-label="Breadcrumb"><a href="/tutorials">Tutorials</a> / <span aria-current="page">${t.title}</span></nav>
<article class="tutorial">
  <header class="article-head">
    <h1>${t.title}</h1>
    <p class="lead">${t.summary}</p>
    <ul class="facts">
      <li><span class="fact-label">Level</span> <span class="tag tag-${t.level}">${levelLabel(t.level)}</span></li>
      <li><span class="fact-label">For</span> ${ages(t.minAge, t.maxAge)}</li>
      <li><span class="fact-label">Length</span> ${t.minutes} minutes</li>
      <li><span class="fact-label">By</span> ${t.partner}</li>
    </ul>
  </header>
  <div class="prose">${raw(t.bodyHtml)}</div>
</article>
<section class="panel done-panel" id="done" aria-labelledby="done-title">
  <h2 id="done-title">I did it!</h2>
  <p>Finished the activity? Get your certificate — print it or share it with your class.</p>
  ${formAlert(form.message, form.errors, 'done')}
  <form method="post" action="/tutorials/${encodeURIComponent(t.slug)}/done" class="form form-inline">
    ${formNonce(form.nonce)}
    ${field({ form: 'done', name: 'name', label: 'Name on the certificate', value: form.values.name, errors: form.errors, maxlength: 80, autocomplete: 'name' })}
    ${countrySelect({ form: 'done', name: 'country', label: 'Country', value: form.values.country, errors: form.errors })}
    ${field({ form: 'done', name: 'email', label: 'Email', type: 'email', required: false, hint: 'We send you the link to your certificate, once. Leave it empty for none.', value: form.values.email, errors: form.errors, maxlength: 254, autocomplete: 'email' })}
    <div class="form-actions"><button class="button" type="submit">Get my certificate</button></div>
  </form>
</section>
`)
}
