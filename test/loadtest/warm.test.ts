import t from 'tap'
import { PassThrough } from 'node:stream'
import { describeWarm, warm, warmMain } from '../../loadtest/warm.js'
import { startFakeSite } from './fake-site.js'

function sink (): { stream: PassThrough, text: () => string } {
  const stream = new PassThrough()
  let text = ''
  stream.on('data', (d: Buffer) => { text += d })
  return { stream, text: () => text }
}

t.test('warms every sitemap page once, then measures the hit ratio of a second pass', async t => {
  const site = await startFakeSite({ news: 30, tutorials: 10 })
  t.teardown(() => site.close())
  const progress = sink()
  const r = await warm({ url: site.url, concurrency: 4, progress: progress.stream })
  t.equal(r.first.pages, 45)
  t.equal(r.first.ok, 45)
  t.equal(r.first.cache.miss, 45, 'first pass fills the cache')
  t.same(r.second && [r.second.hitRatio, r.second.cache.hit], [1, 45])
  t.ok([...site.gets.values()].every(n => n === 2), 'each page requested exactly once per pass')
  t.equal(site.gets.size, 45)
  t.match(progress.text(), /warming\s+\[#{30}\] 45\/45 100%/, 'progress bar')
  t.match(describeWarm(r), /warmed 45 pages .* 45 ok, 0 failed[\s\S]*second pass: hit ratio 100\.0% \(HIT 45/)
})

t.test('reports failures and a missing cache', async t => {
  const site = await startFakeSite({ cache: false, news: 2, tutorials: 1, failPaths: { '/news/article-2': 500 } })
  t.teardown(() => site.close())
  const out = sink()
  const err = sink()
  const code = await warmMain(['--url', site.url, '--concurrency', '2'], { stdout: out.stream, stderr: err.stream })
  t.equal(code, 1, 'a failed page fails the warm-up')
  t.match(out.text(), /1 failed/)
  t.match(out.text(), /failed \/news\/article-2: status 500/)
  t.match(out.text(), /no X-Cache\/Cache-Status headers/)
})

t.test('usage errors exit 2; an unreachable sitemap exits 1', async t => {
  const err = sink()
  t.equal(await warmMain([], { stdout: sink().stream, stderr: err.stream }), 2)
  t.match(err.text(), /missing --url[\s\S]*usage: npm run warm/)
  t.equal(await warmMain(['--url', 'http://127.0.0.1:9', '--concurrency', '0'], { stdout: sink().stream, stderr: sink().stream }), 2)
  const e2 = sink()
  t.equal(await warmMain(['--url', 'http://127.0.0.1:9'], { stdout: sink().stream, stderr: e2.stream }), 1)
  t.match(e2.text(), /cannot read the sitemap/)
})
