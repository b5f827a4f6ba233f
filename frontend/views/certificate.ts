import { html, type Html } from '../html.js'
import { countryName } from '../../common/countries.js'
import type { Certificate } from '../repositories.js'
import { date } from './components.js'
import { layout, type AssetUrls } from './layout.js'

export function certificatePage (assets: AssetUrls, c: Certificate): Html {
  return layout(assets, { title: `Certificate for ${c.name}`, noindex: true }, html`
<div class="certificate" role="document" aria-labelledby="cert-title">
  <p class="eyebrow">Certificate of completion</p>
  <h1 id="cert-title">${c.name}</h1>
  <p class="cert-line">completed the Hour of Code activity</p>
  <p class="cert-tutorial"><a href="/tutorials/${encodeURIComponent(c.tutorialSlug)}">${c.tutorialTitle}</a></p>
  <p class="cert-meta">${date(c.createdAt)} · ${countryName(c.country)}</p>
  <p class="cert-id">Certificate ${c.id}</p>
</div>
<p class="center actions"><a class="button" href="/tutorials">Try another tutorial</a> <a class="button button-secondary" href="/">Back home</a></p>
`)
}
