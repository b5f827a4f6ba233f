/**
 * One typed, validated configuration per role, read from the environment.
 *
 * Each role declares a TypeBox object schema whose property names are the
 * environment variable names. `loadConfig` converts the strings, applies
 * defaults and checks the result; any malformed value stops start-up with a
 * message naming the variable. An empty value counts as unset, unless the
 * property is marked `keepEmpty: true`. Every property carries a `description`, which
 * `.env.example` and the README are checked against.
 */
import { Type, type Static, type TObject, type TSchema } from '@sinclair/typebox'
import { Value } from '@sinclair/typebox/value'

export class ConfigError extends Error {
  readonly problems: string[]
  constructor (problems: string[]) {
    super(`invalid configuration:\n  ${problems.join('\n  ')}`)
    this.name = 'ConfigError'
    this.problems = problems
  }
}

/** A comma-separated list of absolute http(s) URLs, e.g. UPSTREAMS. */
export const UrlList = (description: string, opts: { default?: string } = {}) =>
  Type.String({ description, pattern: '^(https?://[^,\\s]+)(,\\s*https?://[^,\\s]+)*$', ...opts })

export const Port = (description: string, def: number) =>
  Type.Integer({ minimum: 0, maximum: 65535, default: def, description })

/** Settings every role shares. */
export const CommonEnv = {
  HOST: Type.String({ default: '127.0.0.1', minLength: 1, description: 'Interface to listen on.' }),
  LOG_LEVEL: Type.Union(
    ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'].map((l) => Type.Literal(l)),
    { default: 'info', description: 'pino log level.' }
  ),
  REDIS_URL: Type.Optional(Type.String({
    pattern: '^rediss?://',
    description: 'Redis for the invalidation bus, rate limits and the shared render cache. Unset: the embedded bus (one machine only).'
  })),
  REDIS_PREFIX: Type.String({
    pattern: '^[A-Za-z0-9:_.-]{1,64}$',
    default: 'flashcrowd',
    description: 'Namespace of every Redis key (bus stream, render cache, rate limits). Tiers that share one Redis must use different prefixes.'
  }),
  ADMIN_TOKEN: Type.Optional(Type.String({
    minLength: 16,
    description: 'Bearer token for PURGE/BAN and the editor API (at least 16 characters). Unset: those endpoints refuse everything.'
  })),
  METRICS_TOKEN: Type.Optional(Type.String({
    minLength: 16,
    description: 'Bearer token the Prometheus scraper sends for GET /-/metrics (at least 16 characters; a credential of its own, so the scrape configuration cannot purge or publish). Unset: /-/metrics refuses everything.'
  }))
}

export const DatabaseEnv = {
  DATABASE_URL: Type.Optional(Type.String({
    pattern: '^postgres(ql)?://',
    description: 'Primary Postgres (read-write). Unset: the embedded database (PGlite over the wire) under .flashcrowd/.'
  })),
  FLASHCROWD_STATE_DIR: Type.String({ minLength: 1, default: '.flashcrowd', description: 'Folder of the embedded database (pgdata/), its owner record and the generated admin token.' }),
  DATABASE_POOL_MAX: Type.Integer({ minimum: 1, maximum: 1000, default: 10, description: 'Connections in the pool.' }),
  DATABASE_STATEMENT_TIMEOUT_MS: Type.Integer({ minimum: 100, maximum: 600_000, default: 5000, description: 'Statement timeout; a stuck query fails instead of holding a connection.' }),
  DATABASE_FAILOVER_MS: Type.Integer({ minimum: 0, maximum: 600_000, default: 30_000, description: 'How long after its last answer a database that stopped answering (or turned read-only under a writer) is reported as failing over: /-/health stays 200 with `database: "failing-over"`, so load balancers keep the role while pages come from caches and writes are retried; after that it is reported down (503).' }),
  DATABASE_CONNECT_TIMEOUT_MS: Type.Integer({ minimum: 100, maximum: 60_000, default: 2000, description: 'How long a request waits for a pooled connection before it fails with 503.' })
}

function describe (error: { path: string, message: string, value: unknown, schema: TSchema }): string {
  const name = error.path.replace(/^\//, '') || '(root)'
  const got = error.value === undefined ? 'missing' : `got ${JSON.stringify(error.value)}`
  const choices = (error.schema.anyOf as TSchema[] | undefined)?.map((s) => s.const)
  const message = choices?.every((c) => c !== undefined) ? `must be one of ${choices.join(', ')}` : error.message
  return `${name}: ${message} (${got})`
}

/**
 * Reads `env` through `schema`. Empty strings count as unset, so a blank line
 * in an env file falls back to the default instead of failing oddly.
 */
export function loadConfig<T extends TObject> (schema: T, env: NodeJS.ProcessEnv = process.env): Static<T> {
  const raw: Record<string, unknown> = {}
  for (const [key, prop] of Object.entries(schema.properties)) {
    const v = env[key]
    // A property marked `keepEmpty` gives an explicitly empty value a meaning
    // of its own (CACHE_PROBE_PATH= turns probes off); unset still means the default.
    if (v !== undefined && (v !== '' || (prop as { keepEmpty?: boolean }).keepEmpty === true)) raw[key] = v.trim()
  }
  const withDefaults = Value.Default(schema, raw)
  const converted = Value.Convert(schema, withDefaults)
  if (!Value.Check(schema, converted)) {
    const seen = new Set<string>()
    const problems: string[] = []
    for (const e of Value.Errors(schema, converted)) {
      if (seen.has(e.path)) continue // one message per variable is enough
      seen.add(e.path)
      problems.push(describe(e))
    }
    throw new ConfigError(problems)
  }
  return converted as Static<T>
}

/** Splits a comma-separated list, dropping blanks. */
export function list (value: string | undefined): string[] {
  return (value ?? '').split(',').map((s) => s.trim()).filter(Boolean)
}

export type { Static, TSchema }

/**
 * For `server.ts` entry points: a configuration error is the operator's to
 * fix, so print the message naming each variable and exit 2 (no stack trace).
 */
export function loadConfigOrExit<T extends TObject> (schema: T, role: string, env: NodeJS.ProcessEnv = process.env): Static<T> {
  try {
    return loadConfig(schema, env)
  } catch (err) {
    if (err instanceof ConfigError) {
      console.error(`${role}: ${err.message}`)
      process.exit(2)
    }
    throw err
  }
}
