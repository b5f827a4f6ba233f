/**
 * The load tester's environment: one TypeBox schema read by `loadConfig`
 * (common/config.ts). Everything else is a command-line flag (cli.ts).
 */
import { Type, type Static } from '@sinclair/typebox'
import { loadConfig } from '../common/config.js'

export const LoadtestEnv = Type.Object({
  LOADTEST_TOKEN: Type.Optional(Type.String({
    minLength: 16,
    description: 'Shared secret of a distributed load test (at least 16 characters), the same on the coordinator and every agent (`--token` overrides it). Required when the coordinator listens on, or an agent joins, an address other than loopback.'
  }))
})

export type LoadtestConfig = Static<typeof LoadtestEnv>

export function loadLoadtestConfig (env: NodeJS.ProcessEnv = process.env): LoadtestConfig {
  return loadConfig(LoadtestEnv, env)
}
