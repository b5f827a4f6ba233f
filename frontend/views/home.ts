import { html, type Html } from '../html.js'
import type { ArticleCard, TutorialCard } from '../repositories.js'
import { articleItem, formatNumber, tutorialCard } from './components.js'
import { layout, type AssetUrls } from './layout.js'

export interface HomeData { tutorials: TutorialCard[], news: ArticleCard[], participants: number }

/**
 * The counter is rendered with the value known at render time (the page works
 * without JavaScript) and refreshed by counter.js from /counter.json, so the
 * page itself does not change with every sign-up and stays cacheable.
 */
export function homePage (assets: AssetUrls, data: HomeData): Html {
  return layout(assets, { title: 'Hour of Code', section: 'home', scripts: ['counter.js'], canonicalPath: '/' }, html`
<section class="hero">
  <div class="hero-text">
    <p class="eyebrow">Computer Science Education Week</p>
    <h1>Anybody can learn. Start with one hour of code.</h1>
    <p class="lead">Fun, free activities for every age and every device — no experience needed. Pick a tutorial, invite your class, and earn a certificate.</p>
    <p class="actions"><a class="button" href="/tutorials">Find a tutorial</a> <a class="button button-secondary" href="/events/new">Host an event</a></p>
  </div>
  <div class="counter" aria-live="polite">
    <p class="counter-number"><strong id="participants" data-src="/counter.json">${formatNumber(data.participants)}</strong></p>
    <p class="counter-label">participants so far</p>
  </div>
</section>

<section class="section" aria-labelledby="featured">
  <div class="section-head"><h2 id="featured">Featured tutorials</h2><a href="/tutorials">All tutorials →</a></div>
  <ul class="cards">${data.tutorials.map(tutorialCard)}</ul>
</section>

<section class="section" aria-labelledby="latest">
  <div class="section-head"><h2 id="latest">Latest news</h2><a href="/news">All news →</a></div>
  <ul class="article-list">${data.news.map(articleItem)}</ul>
</section>
`)
}
