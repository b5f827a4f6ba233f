/**
 * Counters that every write of a kind bumps (the live "participants so far")
 * are sharded: a single row would put every sign-up in the campaign behind
 * one row lock, held until its commit is flushed. Writers add to one of
 * `COUNTER_SHARDS` rows at random; readers sum the base row and its shards.
 */
import { sql, type Kysely } from 'kysely'
import type { Database } from './db-types.js'

export const PARTICIPANTS = 'participants'
export const COUNTER_SHARDS = 16

export function counterShard (name: string, shard: number): string {
  return `${name}#${shard}`
}

export async function bumpCounter (db: Kysely<Database>, name: string, by: number, shard = Math.floor(Math.random() * COUNTER_SHARDS)): Promise<void> {
  await sql`insert into counters (name, value) values (${counterShard(name, shard)}, ${by})
    on conflict (name) do update set value = counters.value + excluded.value`.execute(db)
}

export async function readCounter (db: Kysely<Database>, name: string): Promise<number> {
  const row = await db.selectFrom('counters')
    .select(sql<string>`coalesce(sum(value), 0)`.as('total'))
    .where((eb) => eb.or([eb('name', '=', name), eb('name', 'like', `${name}#%`)]))
    .executeTakeFirstOrThrow()
  return Number(row.total)
}
