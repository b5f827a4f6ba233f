// Renders report.html in headless Chromium: the plots must be there and drawn.
import t from 'tap'
import { mkdir, readFile } from 'node:fs/promises'
import { existsSync } from 'node:fs'
import { join } from 'node:path'
import { chromium } from 'playwright-core'
import { runLoadTest } from '../../loadtest/run.js'
import { loadScenario } from '../../loadtest/scenarios.js'
import { parseThreshold } from '../../loadtest/thresholds.js'
import { esc, niceTicks, renderHtml } from '../../loadtest/report-html.js'
import { startFakeSite } from './fake-site.js'

const OUT = join(import.meta.dirname, '../../test-output/loadtest/report-html')
const CHROMIUM = '/usr/bin/chromium'

t.test('helpers', async t => {
  t.equal(esc('<a href="x">&\'</a>'), '&lt;a href=&quot;x&quot;&gt;&amp;&#39;&lt;/a&gt;')
  t.same(niceTicks(0, 26000), [0, 5000, 10000, 15000, 20000, 25000, 30000], 'the top tick covers the data')
  t.same(niceTicks(0, 1), [0, 0.2, 0.4, 0.6, 0.8, 1])
  t.same(niceTicks(0, 4.2, 4), [0, 1, 2, 3, 4, 5])
})

t.test('report.html is self-contained and its plots render in Chromium', { skip: existsSync(CHROMIUM) ? false : `no ${CHROMIUM} (apt-get install chromium)` }, async t => {
  const site = await startFakeSite({ failPaths: { '/events': 503 } })
  t.teardown(() => site.close())
  const { summary, files } = await runLoadTest({
    scenario: await loadScenario('spike'), url: site.url, duration: 3, model: 'closed', target: 6, pool: 6, step: 0.25,
    seed: 1, timeout: 5, progress: null, out: OUT,
    thresholds: ['p99<1000', 'errors<0.1%', 'hit>0.9', 'p99{endpoint=/news/:slug}<300'].map(parseThreshold),
    planUsers: { users: 200_000, thinkTime: 10, headroom: 0.7, tier: { cache: 1, frontend: 1, backend: 1 } }
  })
  const file = files.find(f => f.endsWith('report.html'))!
  const html = await readFile(file, 'utf8')
  t.equal(html, renderHtml(summary))
  t.notMatch(html, /<script|<link|src=|url\((?!#)|@import/i, 'no script, stylesheet, image or font to fetch')
  t.notMatch(html, /https?:\/\/(?!127\.0\.0\.1|www\.w3\.org\/2000\/svg)/, 'no external URL')

  const browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'] })
  t.teardown(() => browser.close())
  const page = await browser.newPage({ viewport: { width: 1040, height: 900 } })
  const requests: string[] = []
  page.on('request', r => { requests.push(r.url()) })
  await page.goto('file://' + file)
  t.same(requests.filter(u => !u.startsWith('file:')), [], 'opens offline: no network request')

  const plots = await page.$$eval('svg.plot', svgs => svgs.map(svg => {
    const box = svg.getBoundingClientRect()
    return {
      id: svg.id,
      width: box.width,
      height: box.height,
      series: [...svg.querySelectorAll('path.series')].map(p => {
        // SVGPathElement: the test's TypeScript has no DOM lib
        const path = p as unknown as { getTotalLength: () => number, getBBox: () => { width: number } }
        return { name: p.getAttribute('data-series'), length: path.getTotalLength(), w: path.getBBox().width }
      }),
      bands: [...svg.querySelectorAll('g.band text')].map(x => x.textContent)
    }
  }))
  t.same(plots.map(p => p.id), ['plot-latency', 'plot-rps', 'plot-hit'])
  for (const p of plots) {
    t.ok(p.width > 500 && p.height > 150, `${p.id} laid out at ${p.width}×${p.height}`)
    t.ok(p.series.length > 0 && p.series.every(s => s.length > 0), `${p.id} draws non-empty lines: ${p.series.map(s => s.name).join(', ')}`)
    t.same(p.bands, ['ramp', 'hold', 'down'], `${p.id} shows the stage bands`)
  }
  t.ok(plots[0].series.find(s => s.name === 'p99')!.w > 300, 'the p99 line spans the run')
  t.same(plots[1].series.map(s => s.name), ['req/s', 'errors/s', 'connections'])

  const text = await page.textContent('body')
  t.match(text, /FAIL/, 'verdict badge')
  t.match(text, /errors<0\.1%/, 'thresholds listed')
  t.match(text, /POST|\/news\/:slug/, 'endpoint rows')
  t.match(text, /Capacity plan for 200,000 concurrent users/)
  await mkdir(OUT, { recursive: true })
  const shot = join(OUT, 'report.png')
  await page.screenshot({ path: shot, fullPage: true })
  t.ok(existsSync(shot), `screenshot at ${shot}`)
})
