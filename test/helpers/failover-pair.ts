/**
 * A primary and its synchronous hot standby (private servers, as Patroni's
 * synchronous_mode keeps them: an acknowledged commit is on both), a seeded
 * `flashcrowd` database, and a router (a TCP proxy, as HAProxy's leader
 * listener) in front of the primary. `failover()` does what the failover
 * manager and the router do when the primary dies: kill -9 of the primary,
 * the standby promoted (a new timeline), the router switched to it.
 */
import pg from 'pg'
import type { Test } from 'tap'
import { createDatabase } from '../../common/db.js'
import { seed, type SeedSizes } from '../../common/seed.js'
import { migrateToLatest } from '../../migrations/migrator.js'
import { startPrivatePostgres, startPrivateStandby, type PrivatePostgres, type PrivateStandby } from './private-postgres.js'
import { startTcpProxy, type TcpProxy } from './tcp-proxy.js'

export interface FailoverPair {
  primary: PrivatePostgres
  standby: PrivateStandby
  /** Routes to the leader: the primary, after `failover()` the promoted standby. */
  router: TcpProxy
  /** The `flashcrowd` database through the router. */
  url: string
  /** The leader's `flashcrowd` database, directly (the primary, or the standby once promoted). */
  leaderUrl: () => string
  /** kill -9 of the primary; `between` runs while nobody leads; then the standby is promoted and the router switched. */
  failover: (between?: () => Promise<void>) => Promise<void>
}

export async function sql<T extends pg.QueryResultRow> (url: string, text: string, values: unknown[] = []): Promise<T[]> {
  const c = new pg.Client({ connectionString: url, connectionTimeoutMillis: 5000 })
  await c.connect()
  try { return (await c.query<T>(text, values)).rows } finally { await c.end().catch(() => {}) }
}

export async function until (what: string, check: () => Promise<boolean>, ms = 30_000): Promise<void> {
  const deadline = Date.now() + ms
  while (!await check().catch(() => false)) {
    if (Date.now() > deadline) throw new Error(`${what}: not within ${ms} ms`)
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
}

export async function startFailoverPair (t: Test, sizes: Partial<SeedSizes>): Promise<FailoverPair> {
  const primary = await startPrivatePostgres({ settings: { wal_level: 'replica', max_wal_senders: '5' } })
  t.teardown(primary.remove)
  await sql(primary.url(), 'create database flashcrowd')
  const setup = createDatabase({ url: primary.url('flashcrowd'), max: 2, statementTimeoutMs: 60_000 })
  await migrateToLatest(setup.db)
  await seed(setup.db, { sizes: { tutorials: 1, news: 1, comments: 0, events: 0, completions: 0, ...sizes } })
  await setup.close()

  const standby = await startPrivateStandby(primary)
  t.teardown(standby.remove)
  await sql(primary.url(), "alter system set synchronous_standby_names = '*'")
  await sql(primary.url(), 'select pg_reload_conf()')
  await until('the standby is synchronous', async () => (await sql<{ s: string }>(primary.url(), 'select sync_state as s from pg_stat_replication'))[0]?.s === 'sync')

  const router = await startTcpProxy(primary.port)
  t.teardown(router.close)
  let leader: PrivatePostgres = primary
  return {
    primary,
    standby,
    router,
    url: router.url(primary.url('flashcrowd')),
    leaderUrl: () => leader.url('flashcrowd'),
    async failover (between) {
      await primary.kill()
      await between?.()
      await standby.promote()
      leader = standby
      router.retarget(standby.port)
    }
  }
}
