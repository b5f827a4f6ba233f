import t from 'tap'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { loadSitemap, parseSitemap, rankPages, rewriteToBase } from '../../loadtest/sitemap.js'
import { startFakeSite } from './fake-site.js'

t.test('parses urlset and sitemapindex documents', async t => {
  const doc = parseSitemap(`<?xml version="1.0"?>
<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">
  <url><loc> https://public.example/news/a?x=1&amp;y=2 </loc><priority>0.8</priority></url>
  <url><loc><![CDATA[https://public.example/tutorials/b]]></loc></url>
  <url><lastmod>2024-01-01</lastmod></url>
</urlset>`)
  t.same(doc.urls, [{ loc: 'https://public.example/news/a?x=1&y=2', priority: 0.8 }, { loc: 'https://public.example/tutorials/b' }])
  const idx = parseSitemap('<sitemapindex><sitemap><loc>https://public.example/sitemap-news.xml</loc></sitemap></sitemapindex>')
  t.same(idx.sitemaps, ['https://public.example/sitemap-news.xml'])
})

t.test('rewrites the origin of <loc> to the base under test', async t => {
  t.equal(rewriteToBase('https://hour.example.org/news/a?p=2', 'http://127.0.0.1:8080'), '/news/a?p=2')
  t.equal(rewriteToBase('https://hour.example.org/', 'http://127.0.0.1:8080/'), '/')
  t.equal(rewriteToBase('/events', 'http://127.0.0.1:8080'), '/events', 'relative locs too')
  t.equal(rewriteToBase('https://pub.example/news', 'http://127.0.0.1:8080/site/'), '/site/news', 'base path prefix kept')
})

t.test('ranks home, news index, tutorials, events first, then by priority and order', async t => {
  t.same(rankPages([
    { path: '/news/b' }, { path: '/events' }, { path: '/news/a', priority: 0.9 }, { path: '/news' },
    { path: '/' }, { path: '/tutorials' }, { path: '/news/b' }
  ]), ['/', '/news', '/tutorials', '/events', '/news/a', '/news/b'])
})

t.test('loadSitemap reads the site\'s sitemap and follows an index', async t => {
  const site = await startFakeSite({ news: 3, tutorials: 2, publicOrigin: 'https://behind.proxy.example' })
  t.teardown(() => site.close())
  const pages = await loadSitemap(site.url)
  t.equal(pages.length, 10)
  t.ok(pages.every(p => p.path.startsWith('/') && !p.path.includes('proxy')), 'paths on the base, not the public origin')
  t.same(rankPages(pages).slice(0, 4), ['/', '/news', '/tutorials', '/events'])

  const srv = createServer((req, res) => {
    if (req.url === '/sitemap.xml') res.end('<sitemapindex><sitemap><loc>https://x.example/s1.xml</loc></sitemap><sitemap><loc>https://x.example/s2.xml</loc></sitemap></sitemapindex>')
    else if (req.url === '/s1.xml') res.end('<urlset><url><loc>https://x.example/</loc></url></urlset>')
    else if (req.url === '/s2.xml') res.end('<urlset><url><loc>https://x.example/news/z</loc></url></urlset>')
    else res.writeHead(404).end()
  })
  await new Promise<void>(r => srv.listen(0, '127.0.0.1', r))
  t.teardown(() => new Promise<void>(r => srv.close(() => r())))
  const base = `http://127.0.0.1:${(srv.address() as AddressInfo).port}`
  t.same((await loadSitemap(base)).map(p => p.path), ['/', '/news/z'])
  await t.rejects(loadSitemap(base + '/nowhere/'), /cannot read the sitemap at .*nowhere\/sitemap.xml: .*404/)
})
