/**
 * `npm run bench:failover`: what a database failover costs the writers, and
 * how much of it the tier adds. `npm run cluster` with its own Patroni pair
 * (test/helpers/failover-drill.ts) takes form posts from visitors while, in
 * the same run, a plain client writes straight through HAProxy to PostgreSQL
 * (what Patroni alone gives: reconnect and insert, nothing else). The leader
 * is broken in turn — postmaster kills, a lost node, a switchover — and each
 * fault's write outage (last acknowledged write before it → first after) is
 * printed for both, with the difference: the time the tier adds.
 *
 * Options: --kills n (postmaster kills, default 3), --writers n (visitors
 * posting forms, default 8). Needs patroni, etcd and haproxy.
 */
import { parseArgs } from 'node:util'
import pg from 'pg'
import { databaseUnavailable } from '../scripts/database-cluster.js'
import { drillDatabaseUrl, startDrill, startVisitors, writeOutage, type Fault } from '../test/helpers/failover-drill.js'

const { values } = parseArgs({ options: { kills: { type: 'string', default: '3' }, writers: { type: 'string', default: '8' } } })
const missing = databaseUnavailable()
if (missing) {
  console.error(`bench:failover needs Patroni, etcd and HAProxy: ${missing}`)
  process.exit(1)
}
const plan: Fault[] = [...Array.from({ length: Number(values.kills) }, (): Fault => 'postmaster'), 'lost-node', 'switchover']

/** Clients writing straight through the write router: connect, insert, and on any error connect again. */
function directWriters (url: string, count: number) {
  const acks: number[] = []
  let running = true
  const loop = async () => {
    while (running) {
      const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 1000, query_timeout: 2000 })
      client.on('error', () => {})
      try {
        await client.connect()
        while (running) {
          await client.query('insert into bench_direct_writes default values')
          acks.push(Date.now())
          await new Promise((resolve) => setTimeout(resolve, 30))
        }
      } catch { /* the server went away: connect again */ }
      await client.end().catch(() => {})
      await new Promise((resolve) => setTimeout(resolve, 50))
    }
  }
  const loops = Array.from({ length: count }, loop)
  return { acks, stop: async () => { running = false; await Promise.all(loops) } }
}

console.log('bench:failover: starting the cluster with its own Patroni pair…')
const drill = await startDrill()
try {
  const setup = new pg.Client({ connectionString: drillDatabaseUrl(drill) })
  await setup.connect()
  await setup.query('create table if not exists bench_direct_writes (id bigserial primary key, at timestamptz not null default now())')
  await setup.end()
  await drill.whole(120_000)
  const visitors = await startVisitors(drill.base, { writers: Number(values.writers), author: `Bench ${Date.now()}` })
  const direct = directWriters(drillDatabaseUrl(drill), 4)
  const rows: Array<{ fault: Fault, tier: number, patroni: number }> = []
  try {
    for (const fault of plan) {
      await drill.whole(90_000)
      await new Promise((resolve) => setTimeout(resolve, 1500))
      const { at, leader } = await drill.fault(fault)
      await drill.whole(120_000, leader)
      const settledAt = Date.now()
      const row = { fault, tier: writeOutage(visitors.acked.map((a) => a.ackAt), at, settledAt), patroni: writeOutage(direct.acks, at, settledAt) }
      rows.push(row)
      console.log(`${fault.padEnd(11)} tier ${(row.tier / 1000).toFixed(2)} s   Patroni alone ${(row.patroni / 1000).toFixed(2)} s`)
    }
  } finally {
    await direct.stop()
    await visitors.stop()
  }
  console.log(`\nwrite outage per fault (form posts through HAProxy → cache → frontend → backend, beside a client writing straight through HAProxy to PostgreSQL), ${values.writers} visitors:`)
  console.log(`${'fault'.padEnd(12)}${'tier'.padStart(9)}${'Patroni alone'.padStart(15)}${'tier adds'.padStart(11)}`)
  for (const r of rows) {
    console.log(`${r.fault.padEnd(12)}${`${(r.tier / 1000).toFixed(2)} s`.padStart(9)}${`${(r.patroni / 1000).toFixed(2)} s`.padStart(15)}${`${((r.tier - r.patroni) / 1000).toFixed(2)} s`.padStart(11)}`)
  }
  const worst = Math.max(...rows.map((r) => r.tier - r.patroni))
  console.log(`the tier adds at most ${(worst / 1000).toFixed(2)} s to Patroni's own outage (target: ≤ 1 s); ${visitors.badWrites.length} answers other than the write's or a 503 with Retry-After; ${visitors.retried} 503s`)
} finally {
  await drill.remove()
}
