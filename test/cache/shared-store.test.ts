import t from 'tap'
import type { Test } from 'tap'
import { fork } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { SharedStore } from '../../cache/shared-store.js'
import type { CachedObject } from '../../cache/store.js'
import { policyClassFor, systemClock } from '../../cache/freshness.js'
import { ROOT } from '../helpers/spawn.js'

const Policy = policyClassFor(systemClock)

function obj (key: string, size: number, opts: { tags?: string[], url?: string, body?: string, freshUntil?: number, vary?: string } = {}): CachedObject {
  const url = opts.url ?? key
  const headers: Record<string, string> = { 'cache-control': 'max-age=60' }
  if (opts.vary) headers.vary = opts.vary
  return {
    key, primary: url, host: 'h', url, status: 200, headers, policy: new Policy({ method: 'GET', url, headers: {} }, { status: 200, headers }),
    bodies: { identity: Buffer.from(opts.body ?? `body of ${key}`) },
    compressible: false, etag: '"e1"', lastModified: undefined, tags: opts.tags ?? [], responseTime: 1, fetchStarted: 1, fetchSequence: 7, initialAge: 0,
    freshUntil: opts.freshUntil ?? Date.now() + 60_000, swrMs: 0, sieMs: 0, graceMs: 0, explicitlyShared: false, mustRevalidate: false, heads: { second: -1 }, size
  }
}

function dir (t: Test): string {
  const d = mkdtempSync(join(tmpdir(), 'fc-shared-store-'))
  t.teardown(() => { rmSync(d, { recursive: true, force: true }) })
  return d
}

function stores (t: Test, maxBytes: number, n = 2, admission = false): SharedStore[] {
  const path = dir(t)
  const out = Array.from({ length: n }, () => new SharedStore({ path, maxBytes, Policy, admission, touchIntervalMs: 60_000 }))
  t.teardown(async () => { for (const s of out) await s.close() })
  return out
}

t.test('an object stored by one worker is read by another, with its fields, policy and bodies', async (t) => {
  const [a, b] = stores(t, 1024 * 1024)
  t.ok(a.put(obj('h/page', 2000, { tags: ['news', 'page:1'], body: 'the page' })))
  b.refresh()
  const got = b.lookup('h/page')!
  t.ok(got, 'visible to the sibling')
  t.equal(got.bodies.identity.toString(), 'the page')
  t.equal(got.etag, '"e1"')
  t.same(got.tags, ['news', 'page:1'])
  t.equal(got.fetchSequence, 0, 'sequences are per process: a shared object is ordered before every request')
  t.equal(got.policy.storable(), true, 'policy rebuilt')
  t.same(b.keysForTag('news'), ['h/page'])
  t.same(b.keysForUrl('h/page'), ['h/page'])
  t.same(b.keysForUrl('h/page', 'other'), [], 'host filter')
  t.equal(b.bytes, 2000)
  t.equal(b.count, 1)
  // The view's heads holder is the memo'd object's: a refresh made through one view is seen by the next.
  got.heads.second = 42
  t.equal(b.lookup('h/page')!.heads.second, 42)
  // Bodies are copies: a later read does not change what an earlier one handed out.
  t.ok(a.put(obj('h/page', 2000, { body: 'new version' })))
  b.refresh()
  t.equal(got.bodies.identity.toString(), 'the page')
  t.equal(b.lookup('h/page')!.bodies.identity.toString(), 'new version', 'a new version replaces the memo')
  t.same(b.keysForTag('news'), [], 'the old version left the tag index')
})

t.test('a delete or soft purge by one worker is seen by the other at its next request', async (t) => {
  const [a, b] = stores(t, 1024 * 1024)
  a.put(obj('h/x', 1000))
  a.put(obj('h/y', 1000))
  b.refresh()
  t.ok(b.lookup('h/x'))
  t.ok(a.delete('h/x'))
  b.refresh()
  t.equal(b.lookup('h/x'), undefined, 'deleted for every worker')
  t.equal(b.bytes, 1000)
  const now = Date.now()
  t.ok(a.soften('h/y', now))
  b.refresh()
  t.equal(b.lookup('h/y')!.freshUntil, now, 'stale for every worker')
  t.equal(b.lookup('h/y')!.bodies.identity.toString(), 'body of h/y', 'body kept by a soft purge')
})

t.test('the byte budget bounds all workers together; the least recently read go first', async (t) => {
  const evicted: string[] = []
  const path = dir(t)
  const a = new SharedStore({ path, maxBytes: 10_000, Policy, admission: false, touchIntervalMs: 60_000, onEvict: (o) => evicted.push(o.key) })
  const b = new SharedStore({ path, maxBytes: 10_000, Policy, admission: false, touchIntervalMs: 60_000 })
  t.teardown(async () => { await a.close(); await b.close() })
  for (let i = 0; i < 4; i++) (i % 2 === 0 ? a : b).put(obj(`h/${i}`, 2400))
  t.equal(a.bytes, 9600)
  // h/0 is read on b: after b's flush it is the most recently used.
  b.refresh()
  t.ok(b.lookup('h/0'))
  b.flushTouches()
  a.put(obj('h/4', 2400))
  t.same(evicted, ['h/1'], 'the oldest unread object made room')
  a.refresh()
  t.ok(a.lookup('h/0'), 'the object read on the sibling stayed')
  t.ok(a.bytes <= 10_000, `bytes ${a.bytes} within the budget`)
  t.notOk(a.put(obj('h/huge', 20_000)), 'larger than the store: refused')
  t.same(a.keysForUrl('h/1'), [], 'evicted objects leave the indexes')
})

t.test('admission: a one-off newcomer does not push out an object read often (TinyLFU)', async (t) => {
  const [a] = stores(t, 64 * 1024, 1, true)
  for (let i = 0; i < 6; i++) a.put(obj(`h/hot${i}`, 10_000))
  for (let r = 0; r < 5; r++) for (let i = 0; i < 6; i++) a.lookup(`h/hot${i}`)
  let admitted = 0
  for (let i = 0; i < 50; i++) if (a.put(obj(`h/scan${i}`, 10_000))) admitted++
  let kept = 0
  for (let i = 0; i < 6; i++) if (a.get(`h/hot${i}`)) kept++
  t.ok(kept >= 5, `${kept}/6 hot objects survive a scan of 50 new ones`)
  t.ok(admitted <= 1, `${admitted} scan objects admitted`)
})

t.test('vary names, long keys, sweep', async (t) => {
  const [a, b] = stores(t, 1024 * 1024)
  const long = 'h/' + 'x'.repeat(3000)
  t.ok(a.put(obj(long, 500, { tags: ['t'.repeat(1000)] })), 'keys longer than LMDB allows are stored under a hash')
  b.refresh()
  t.equal(b.lookup(long)!.key, long)
  t.same(b.keysForTag('t'.repeat(1000)), [long])
  a.put(obj('h/v|gzip', 500, { url: 'h/v', vary: 'Accept-Encoding' }))
  b.refresh()
  t.same(b.varyOf('h/v'), ['accept-encoding'])
  t.equal(b.varyOf('h/none'), undefined)
  a.delete('h/v|gzip')
  b.refresh()
  t.equal(b.varyOf('h/v'), undefined, 'the vary entry goes with the last variant')
  a.put(obj('h/old', 500, { freshUntil: Date.now() - 1_000_000 }))
  t.equal(b.sweep(Date.now()), 1, 'objects past every window are swept')
  t.equal(a.get('h/old'), undefined)
  t.ok(a.get(long), 'fresh objects stay')
})

t.test('two processes: a put in one is a read in the other at its next request', async (t) => {
  const path = dir(t)
  const a = new SharedStore({ path, maxBytes: 1024 * 1024, Policy, admission: false })
  t.teardown(() => a.close())
  const child = fork(join(ROOT, 'test/helpers/shared-store-child.ts'), [path], { execArgv: ['--import', 'tsx'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
  t.teardown(() => { child.kill() })
  const ask = (key: string) => new Promise<string | null>((resolve) => { child.once('message', (m) => resolve(m as string | null)); child.send(key) })
  t.equal(await ask('h/p'), null)
  for (let i = 0; i < 50; i++) {
    a.put(obj('h/p', 1000, { body: `v${i}` }))
    t.equal(await ask('h/p'), `v${i}`, `version ${i} seen at once`)
  }
  a.delete('h/p')
  t.equal(await ask('h/p'), null, 'a delete is seen at once')
})

t.test('an invalidation noted by one worker keeps out a sibling fetch that started before it', async (t) => {
  const [a, b] = stores(t, 1024 * 1024)
  const now = Date.now()
  a.noteInvalidation(now, { kind: 'url', path: 'h/page' })
  let invalidated = 0
  const early = { ...obj('h/page', 500), fetchStarted: now - 10 }
  t.notOk(b.put(early, { since: early.fetchStarted, onInvalidated: () => { invalidated++ } }), 'fetched before the purge: not stored')
  t.equal(invalidated, 1)
  t.equal(b.get('h/page'), undefined)
  t.ok(b.put(obj('h/other', 500), { since: now - 10 }), 'another URL is not concerned')
  const late = { ...obj('h/page', 500), fetchStarted: now + 5 }
  t.ok(b.put(late, { since: late.fetchStarted }), 'fetched after the purge: stored')
  a.noteInvalidation(now + 10, { kind: 'keys', keys: ['news'] })
  t.notOk(b.put({ ...obj('h/tagged', 500, { tags: ['news'] }), fetchStarted: now }, { since: now }), 'tag invalidation')
  a.noteInvalidation(now + 20, { kind: 'ban', pattern: '^h/b' })
  t.notOk(b.put({ ...obj('h/banned', 500), fetchStarted: now + 15 }, { since: now + 15 }), 'ban')
  t.ok(b.put({ ...obj('h/banned', 500), fetchStarted: now + 25 }, { since: now + 25 }), 'a fetch started after the ban is stored')
})
