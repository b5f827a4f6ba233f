import { html, type Html } from '../html.js'
import { layout, type AssetUrls } from './layout.js'

export function notFoundPage (assets: AssetUrls, what = 'page'): Html {
  return layout(assets, { title: 'Not found', noindex: true }, html`
<div class="error-page">
  <p class="error-code">404</p>
  <h1>We couldn’t find that ${what}</h1>
  <p class="lead">It may have moved, or the link may have a typo.</p>
  <p class="actions"><a class="button" href="/">Go to the home page</a> <a class="button button-secondary" href="/tutorials">Browse tutorials</a></p>
</div>
`)
}

/** 4xx/5xx in the site's style; `message` is shown only when it is safe (below 500, or our own words). */
export function errorPage (assets: AssetUrls, status: number, message: string, retryAfter?: number): Html {
  const title = status === 503 ? 'We’ll be right back' : status >= 500 ? 'Something went wrong' : status === 429 ? 'Slow down a little' : status === 403 ? 'Not allowed' : 'That didn’t work'
  return layout(assets, { title, noindex: true }, html`
<div class="error-page">
  <p class="error-code">${status}</p>
  <h1>${title}</h1>
  <p class="lead">${message}</p>
  ${retryAfter ? html`<p>Please try again in ${retryAfter} seconds.</p>` : ''}
  <p class="actions"><a class="button" href="/">Go to the home page</a></p>
</div>
`)
}
