/**
 * common/bus.ts: MemoryBus, the IPC relay, and RedisStreamBus against the
 * real Redis at REDIS_URL (CI sets it; never a mock): replay after a
 * reconnect, and a gap reported when the missed events were trimmed away.
 */
import t from 'tap'
import { EventEmitter } from 'node:events'
import { Redis } from 'ioredis'
import { MemoryBus, RedisStreamBus, IpcBus, relayBus, isBusEvent, type BusMessage } from '../../common/bus.js'

const until = async (check: () => boolean, ms = 5000) => {
  const deadline = Date.now() + ms
  while (!check() && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 10))
  return check()
}

t.test('MemoryBus delivers to every subscriber; a failing one does not stop the others', async (t) => {
  const bus = new MemoryBus()
  const got: BusMessage[] = []
  bus.subscribe(() => { throw new Error('bad subscriber') })
  const off = bus.subscribe((m) => got.push(m))
  const id = await bus.publish({ kind: 'keys', keys: ['home'] })
  t.equal(got.length, 1)
  t.equal(got[0].id, id)
  off()
  await bus.publish({ kind: 'ban', pattern: '.' })
  t.equal(got.length, 1)
  t.ok(isBusEvent({ kind: 'url', path: '/x' }))
  t.notOk(isBusEvent({ kind: 'url', path: 1 }))
  await bus.close()
})

t.test('relayBus + IpcBus: a child publishes, every child receives', async (t) => {
  const root = new MemoryBus()
  const relay = relayBus(root)
  // Two in-memory "IPC channels": what the child sends, the parent's child handle receives, and back.
  const pair = () => {
    const childEnd = new EventEmitter() as EventEmitter & { send: (m: unknown, a?: unknown, b?: unknown, cb?: (e: Error | null) => void) => boolean, connected: boolean }
    const parentEnd = new EventEmitter() as EventEmitter & { send: (m: unknown) => boolean, connected: boolean }
    childEnd.connected = parentEnd.connected = true
    childEnd.send = (m, _a, _b, cb) => { setImmediate(() => parentEnd.emit('message', m)); cb?.(null); return true }
    parentEnd.send = (m) => { setImmediate(() => childEnd.emit('message', m)); return true }
    return { childEnd, parentEnd }
  }
  const one = pair()
  const two = pair()
  relay.attach(one.parentEnd as never)
  relay.attach(two.parentEnd as never)
  const busOne = new IpcBus(one.childEnd as never)
  const busTwo = new IpcBus(two.childEnd as never)
  const got: string[] = []
  busTwo.subscribe((m) => got.push(JSON.stringify(m.event)))
  const id = await busOne.publish({ kind: 'url', path: '/a' })
  t.ok(id)
  t.ok(await until(() => got.length === 1))
  t.same(JSON.parse(got[0]), { kind: 'url', path: '/a' })
  relay.close()
  await busOne.close()
  await busTwo.close()
})

const redisUrl = process.env.REDIS_URL
t.test('RedisStreamBus', { skip: redisUrl ? false : 'REDIS_URL not set' }, async (t) => {
  const admin = new Redis(redisUrl!)
  t.teardown(() => { admin.disconnect() })

  /** Drops the subscriber's blocking connection (as a network blip would). */
  const killReaders = async () => {
    const list = await admin.client('LIST') as string
    const ids = list.split('\n').filter((l) => /cmd=xread/.test(l)).map((l) => /id=(\d+)/.exec(l)![1])
    for (const id of ids) await admin.client('KILL', 'ID', id)
    return ids.length
  }

  t.test('delivers published events in order, to every subscriber', async (t) => {
    const stream = `flashcrowd:test:bus:${process.pid}:${Date.now()}:a`
    const bus = new RedisStreamBus({ url: redisUrl!, stream, blockMs: 200 })
    t.teardown(async () => { await bus.close(); await admin.del(stream) })
    const a: string[] = []
    const b: string[] = []
    bus.subscribe((m) => a.push((m.event as { path: string }).path))
    bus.subscribe((m) => b.push((m.event as { path: string }).path))
    await new Promise((resolve) => setTimeout(resolve, 300))
    for (const p of ['/1', '/2', '/3']) await bus.publish({ kind: 'url', path: p })
    t.ok(await until(() => a.length === 3 && b.length === 3))
    t.same(a, ['/1', '/2', '/3'])
    t.same(b, a)
  })

  t.test('replays what was published while the reader was disconnected', async (t) => {
    const stream = `flashcrowd:test:bus:${process.pid}:${Date.now()}:b`
    const pub = new RedisStreamBus({ url: redisUrl!, stream })
    const sub = new RedisStreamBus({ url: redisUrl!, stream, blockMs: 200 })
    t.teardown(async () => { await sub.close(); await pub.close(); await admin.del(stream) })
    const got: string[] = []
    let gaps = 0
    sub.subscribe((m) => got.push((m.event as { path: string }).path), { onGap: () => { gaps++ } })
    await new Promise((resolve) => setTimeout(resolve, 300))
    await pub.publish({ kind: 'url', path: '/before' })
    t.ok(await until(() => got.length === 1))
    t.ok(await killReaders() >= 1, 'the reader connection was cut')
    for (const p of ['/while-1', '/while-2']) await pub.publish({ kind: 'url', path: p })
    t.ok(await until(() => got.length === 3), `replayed: ${got.join(' ')}`)
    t.same(got, ['/before', '/while-1', '/while-2'])
    t.equal(gaps, 0, 'nothing was lost, so no gap')
  })

  t.test('reports a gap when the missed events were trimmed away', async (t) => {
    const stream = `flashcrowd:test:bus:${process.pid}:${Date.now()}:c`
    const pub = new RedisStreamBus({ url: redisUrl!, stream })
    const sub = new RedisStreamBus({ url: redisUrl!, stream, blockMs: 200 })
    t.teardown(async () => { await sub.close(); await pub.close(); await admin.del(stream) })
    const got: string[] = []
    const gaps: number[] = []
    sub.subscribe((m) => got.push((m.event as { path: string }).path), { onGap: (since) => gaps.push(since) })
    await new Promise((resolve) => setTimeout(resolve, 300))
    const before = Date.now()
    await pub.publish({ kind: 'url', path: '/seen' })
    t.ok(await until(() => got.length === 1))
    // Cut the reader, publish, and trim the stream before it can reconnect (its retry waits 250 ms).
    const multi = admin.multi()
    const list = await admin.client('LIST') as string
    for (const l of list.split('\n')) if (/cmd=xread/.test(l)) multi.client('KILL', 'ID', /id=(\d+)/.exec(l)![1])
    for (let i = 0; i < 3; i++) multi.xadd(stream, '*', 'e', JSON.stringify({ kind: 'url', path: `/missed-${i}` }), 'at', String(Date.now()))
    multi.xtrim(stream, 'MAXLEN', 1)
    await multi.exec()
    t.ok(await until(() => gaps.length >= 1), 'onGap called')
    t.ok(gaps[0] >= before - 1000 && gaps[0] <= Date.now(), 'since = the time of the last event seen')
  })
})

t.test('a publish to a Redis that hangs fails fast (the outbox retries)', { skip: !process.env.REDIS_URL && 'REDIS_URL not set' }, async (t) => {
  const { startTcpProxy } = await import('../helpers/tcp-proxy.js')
  const proxy = await startTcpProxy(Number(new URL(process.env.REDIS_URL!).port || 6379))
  t.teardown(proxy.close)
  const bus = new RedisStreamBus({ url: `redis://127.0.0.1:${proxy.port}`, stream: `flashcrowd:test:frozen:${process.pid}`, publishTimeoutMs: 300 })
  t.teardown(() => bus.close())
  let first: string | undefined
  for (let i = 0; i < 50 && !first; i++) first = await bus.publish({ kind: 'keys', keys: ['a'] }).catch(() => { return new Promise<undefined>((resolve) => setTimeout(() => resolve(undefined), 50)) })
  t.ok(first, 'published once connected')
  proxy.freeze()
  await t.rejects(bus.publish({ kind: 'keys', keys: ['b'] }), 'rejected, not hanging')
})

t.test('tiers sharing one Redis keep their events apart (REDIS_PREFIX)', { skip: !process.env.REDIS_URL && 'REDIS_URL not set' }, async (t) => {
  const tag = `${process.pid}-${Date.now()}`
  const a = new RedisStreamBus({ url: process.env.REDIS_URL!, prefix: `fc-test-a-${tag}` })
  const b = new RedisStreamBus({ url: process.env.REDIS_URL!, prefix: `fc-test-b-${tag}` })
  t.teardown(async () => { await a.close(); await b.close() })
  t.not(a.stream, b.stream)
  const seenB: BusMessage[] = []
  const seenA: BusMessage[] = []
  b.subscribe((m) => { seenB.push(m) })
  a.subscribe((m) => { seenA.push(m) })
  await new Promise((resolve) => setTimeout(resolve, 300))
  for (let i = 0; i < 50 && seenA.length === 0; i++) {
    await a.publish({ kind: 'keys', keys: ['only-a'] }).catch(() => {})
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
  t.ok(seenA.length > 0, 'a hears its own tier')
  t.equal(seenB.length, 0, 'b hears nothing of tier a')
})
