/**
 * A real browser (Debian's Chromium through playwright-core): home page →
 * a tutorial → an article → post a comment → see it. Screenshots go to
 * test-output/ for a human to look at.
 */
import t from 'tap'
import { existsSync, mkdirSync } from 'node:fs'
import path from 'node:path'
import { chromium } from 'playwright-core'
import { MemoryBus } from '../../common/bus.js'
import { createTestDatabase, openDatabase } from '../helpers/database.js'
import { startBackend, startFrontend } from './helpers.js'

const CHROMIUM = '/usr/bin/chromium'
const OUT = path.resolve('test-output')

t.test('a visitor reads, follows a tutorial and posts a comment', { skip: existsSync(CHROMIUM) ? false : `${CHROMIUM} missing (apt-get install -y chromium)` }, async (t) => {
  mkdirSync(OUT, { recursive: true })
  const database = await createTestDatabase(process.env.DATABASE_URL ? 'postgres' : 'embedded')
  t.teardown(database.close)
  const bus = new MemoryBus()
  const backend = await startBackend(t, database.url, bus)
  const { app } = await startFrontend(t, database.url, { backendUrls: [backend.url], bus })
  await app.listen({ host: '127.0.0.1', port: 0 })
  const base = `http://127.0.0.1:${(app.server.address() as { port: number }).port}`
  const rw = openDatabase(t, database)
  const article = await rw.db.selectFrom('news').select(['slug', 'title']).orderBy('published_at', 'desc').orderBy('id', 'desc').executeTakeFirstOrThrow()

  const browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'] })
  t.teardown(() => browser.close())
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } })
  const page = await context.newPage()
  const problems: string[] = []
  page.on('console', (m) => { if (m.type() === 'error') problems.push(m.text()) })
  page.on('pageerror', (e) => problems.push(e.message))

  await page.goto(`${base}/`)
  t.equal(await page.locator('h1').first().textContent(), 'Anybody can learn. Start with one hour of code.')
  await page.waitForResponse((r) => r.url().endsWith('/counter.json'))
  t.match(await page.locator('#participants').textContent(), /^\d[\d,]*$/, 'the counter script ran (CSP allows it)')
  await page.screenshot({ path: path.join(OUT, 'frontend-home.png'), fullPage: true })

  const first = page.locator('.tutorial-card h3 a').first()
  const title = (await first.textContent())!
  await first.click()
  await page.waitForLoadState()
  t.equal(await page.locator('h1').textContent(), title, 'followed a featured tutorial')
  t.equal(await page.getByRole('button', { name: 'Get my certificate' }).count(), 1)
  await page.screenshot({ path: path.join(OUT, 'frontend-tutorial.png'), fullPage: true })

  await page.goto(`${base}/news/${article.slug}`)
  await page.getByLabel('Your name').fill('Hedy L.')
  await page.getByLabel('Comment', { exact: true }).fill('Our robotics club tried this today <b>and</b> loved it!')
  await Promise.all([page.waitForURL(/rev=/), page.getByRole('button', { name: 'Post comment' }).click()])
  t.match(page.url(), /\/news\/[^?]+\?rev=[0-9A-F]+\/[0-9A-F]+#comment-\d+$/, 'Post/Redirect/Get to the article')
  const comment = page.locator('.comment').first()
  t.equal(await comment.locator('strong').textContent(), 'Hedy L.')
  t.equal(await comment.locator('.comment-body').textContent(), 'Our robotics club tried this today <b>and</b> loved it!', 'shown as typed, as text')
  await page.screenshot({ path: path.join(OUT, 'frontend-comment.png'), fullPage: false })

  await page.goto(`${base}/events`)
  await page.screenshot({ path: path.join(OUT, 'frontend-events.png'), fullPage: false })
  await page.goto(`${base}/events/new`)
  await page.getByRole('button', { name: 'Register event' }).click()
  t.match(await page.locator('#event-organizer').evaluate((el) => (el as unknown as { validationMessage: string }).validationMessage), /./, 'the browser checks required fields first')

  const mobile = await browser.newContext({ viewport: { width: 390, height: 844 }, isMobile: true })
  const phone = await mobile.newPage()
  await phone.goto(`${base}/`)
  const overflow = await phone.evaluate('document.documentElement.scrollWidth - window.innerWidth') as number
  t.ok(overflow <= 0, 'no horizontal scrolling on a phone')
  await phone.screenshot({ path: path.join(OUT, 'frontend-home-mobile.png'), fullPage: false })
  await mobile.close()

  t.same(problems, [], 'no console errors (no CSP violations)')
})
