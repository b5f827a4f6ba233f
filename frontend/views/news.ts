import { html, raw, type Html } from '../html.js'
import type { Article, ArticleCard, CommentView, Page } from '../repositories.js'
import { articleItem, date, formAlert, field, formatNumber, formNonce, FORM_SCRIPT, pagination, textarea, type FormState } from './components.js'
import { layout, type AssetUrls } from './layout.js'

export function newsPage (assets: AssetUrls, data: { page: number, pageSize: number, result: Page<ArticleCard> }): Html {
  const pages = Math.max(1, Math.ceil(data.result.total / data.pageSize))
  return layout(assets, { title: data.page > 1 ? `News (page ${data.page})` : 'News', section: 'news', description: 'News from Hour of Code classrooms around the world.' }, html`
<div class="page-head">
  <h1>News</h1>
  <p class="lead">Stories from classrooms, clubs and communities taking part around the world.</p>
</div>
<ul class="article-list">${data.result.items.map(articleItem)}</ul>
${data.result.items.length === 0 ? html`<p>No news on this page.</p>` : ''}
${pagination({ page: data.page, pages, href: (p) => p > 1 ? `/news?page=${p}` : '/news', label: 'News pages' })}
`)
}

export type CommentForm = FormState

export function articlePage (assets: AssetUrls, data: { article: Article, comments: Page<CommentView>, page: number, pageSize: number, form?: CommentForm }): Html {
  const { article, comments } = data
  const slug = encodeURIComponent(article.slug)
  const pages = Math.max(1, Math.ceil(comments.total / data.pageSize))
  const form = data.form ?? { values: {} }
  return layout(assets, { title: article.title, section: 'news', description: article.summary, canonicalPath: `/news/${slug}`, scripts: [FORM_SCRIPT] }, html`
<nav class="breadcrumbs" aria-label="Breadcrumb"><a href="/news">News</a> / <span aria-current="page">${article.title}</span></nav>
<article class="article">
  <header class="article-head">
    <h1>${article.title}</h1>
    <p class="meta">By ${article.author} · ${date(article.publishedAt)}</p>
    <p class="lead">${article.summary}</p>
  </header>
  <div class="prose">${raw(article.bodyHtml)}</div>
</article>
<section class="comments" id="comments" aria-labelledby="comments-title">
  <h2 id="comments-title">Comments <span class="count">(${formatNumber(comments.total)})</span></h2>
  <div class="panel">
    <h3>Join the conversation</h3>
    ${formAlert(form.message, form.errors, 'comment')}
    <form method="post" action="/news/${slug}/comments#comments" class="form">
      ${formNonce(form.nonce)}
      ${field({ form: 'comment', name: 'author', label: 'Your name', value: form.values.author, errors: form.errors, maxlength: 80, autocomplete: 'name', hint: 'Shown with your comment. First name and initial is fine.' })}
      ${textarea({ form: 'comment', name: 'body', label: 'Comment', value: form.values.body, errors: form.errors, maxlength: 2000, rows: 4 })}
      <div class="form-actions"><button class="button" type="submit">Post comment</button></div>
    </form>
  </div>
  ${comments.items.length === 0 ? html`<p class="empty">No comments yet — be the first.</p>` : ''}
  <ol class="comment-list">
    ${comments.items.map((c) => html`<li class="comment" id="comment-${c.id}">
      <p class="comment-meta"><strong>${c.author}</strong> · ${date(c.createdAt)}</p>
      <p class="comment-body">${c.body}</p>
    </li>`)}
  </ol>
  ${pagination({ page: data.page, pages, href: (p) => `/news/${slug}${p > 1 ? `?page=${p}` : ''}#comments`, label: 'Comment pages' })}
</section>
`)
}
