/**
 * Docker does not run on the development machines, so this keeps
 * docker-compose.yml honest by everything short of running it.
 */
import t from 'tap'
import { readFileSync, existsSync } from 'node:fs'
import path from 'node:path'
import YAML from 'yaml'
import type { TObject } from '@sinclair/typebox'
import { ROOT } from '../helpers/spawn.js'
import { productionCommand } from '../helpers/production-command.js'
import { loadConfig } from '../../common/config.js'
import { ROLE_SCHEMAS } from '../../scripts/env-doc.js'
import { Type } from '@sinclair/typebox'
import { DatabaseEnv } from '../../common/config.js'
import { PurgerEnv, checkPurgerConfig } from '../../purger/config.js'

const compose = YAML.parse(readFileSync(path.join(ROOT, 'docker-compose.yml'), 'utf8'), { merge: true }) as { services: Record<string, any>, networks?: Record<string, any> }
const haproxy = readFileSync(path.join(ROOT, 'deploy/haproxy.cfg'), 'utf8')
const schemas: Record<string, TObject> = { ...ROLE_SCHEMAS, migrate: Type.Object({ DATABASE_URL: DatabaseEnv.DATABASE_URL }) }

/** `${VAR:-default}` → default; `${VAR:?msg}` → a sample value a user would give. */
function interpolate (value: string, given: Record<string, string> = {}): string {
  return value.replace(/\$\{(\w+)(:-([^}]*)|:\?[^}]*)?\}/g, (_m, name: string, _rest, def?: string) => given[name] ?? def ?? (name.endsWith('_TOKEN') ? `a-sample-${name.toLowerCase()}-for-tests` : 'sample'))
}

t.test('the production topology is all there', async (t) => {
  const s = compose.services
  for (const name of ['haproxy', 'cache', 'frontend', 'backend', 'mailer', 'migrate', 'postgres-primary', 'postgres-replica', 'redis']) t.ok(s[name], `service ${name}`)
  t.ok(s.cache.deploy.replicas >= 2, '≥ 2 cache')
  t.ok(s.frontend.deploy.replicas >= 3, '≥ 3 frontend')
  t.ok(s.backend.deploy.replicas >= 2, '≥ 2 backend')
  t.match(s.frontend.environment.DATABASE_READ_URL, /postgres-replica/, 'frontends read from the replica')
  t.match(s.backend.environment.DATABASE_URL, /postgres-primary/, 'backends write to the primary')
  t.match(s.mailer.environment.DATABASE_URL, /postgres-primary/, 'mailers claim their rows on the primary')
  t.ok(s.mailer.deploy.replicas >= 2, 'mailers run side by side (they share the queue)')
  t.equal(s.mailer.depends_on.migrate.condition, 'service_completed_successfully', 'on the migrated schema')
  t.ok(s.purger, 'service purger')
  t.match(s.purger.environment.DATABASE_URL, /postgres-primary/, 'the purger claims its jobs on the primary')
  t.equal(s.purger.depends_on.migrate.condition, 'service_completed_successfully', 'on the migrated schema')
})

t.test('the purger runs only with the cdn profile, and then has what it needs', async (t) => {
  const s = compose.services
  const env = (given: Record<string, string> = {}) => Object.fromEntries(Object.entries(s.purger.environment).map(([k, v]) => [k, interpolate(String(v), given)]))
  // Without a CDN it refuses to start (nothing to purge): a plain `docker compose up` must not run it.
  t.throws(() => checkPurgerConfig(loadConfig(PurgerEnv, env())), 'with no CDN set, the purger would exit')
  t.same(s.purger.profiles, ['cdn'], 'so it is in the cdn profile only')
  for (const [name, service] of Object.entries(s)) {
    if (name === 'purger' || service.profiles !== undefined) continue
    t.notOk('purger' in (service.depends_on ?? {}), `${name} does not wait for the purger (it does not run by default)`)
  }
  // With a CDN given the way docs/cdn.md says, its configuration is complete.
  const cases: Array<[string, Record<string, string>]> = [
    ['cloudflare', { CDN_PROVIDER: 'cloudflare', PURGER_CLOUDFLARE_ZONE_ID: 'zone', PURGER_CLOUDFLARE_API_TOKEN: 'cf-token' }],
    ['fastly', { CDN_PROVIDER: 'fastly', PURGER_FASTLY_SERVICE_ID: 'service', PURGER_FASTLY_API_TOKEN: 'fastly-token' }],
    ['cloudfront', { CDN_PROVIDER: 'cloudfront', PURGER_CLOUDFRONT_DISTRIBUTION_ID: 'E123', PURGER_AWS_ACCESS_KEY_ID: 'AKIA', PURGER_AWS_SECRET_ACCESS_KEY: 'secret' }],
    ['flashcrowd edges', { CDN_PROVIDER: 'flashcrowd', CDN_FLASHCROWD_URLS: 'http://edge-1:8080,http://edge-2:8080' }]
  ]
  for (const [what, given] of cases) t.doesNotThrow(() => checkPurgerConfig(loadConfig(PurgerEnv, env(given))), `${what}: the purger's environment passes its checks`)
  t.equal(s.purger.healthcheck?.test, s.backend.healthcheck.test, 'its health check is the roles\' /-/health probe')
})

t.test('every command exists and every env var belongs to its role\'s schema', async (t) => {
  for (const [name, service] of Object.entries(compose.services)) {
    if (service.image !== 'flashcrowd:latest') continue
    // The built code as PID 1's only child (tini, the image's entrypoint): no npm, sh or tsx beside the role.
    const command = productionCommand(service.command)
    if (typeof command === 'string') { t.fail(`${name}: ${command}`); continue }
    t.pass(`${name}: ${service.command.join(' ')} is the build of ${command.source}`)
    const schema = schemas[command.role]
    t.ok(schema, `${name}: a config schema for ${command.role}`)
    const env = Object.fromEntries(Object.entries(service.environment ?? {}).map(([k, v]) => [k, interpolate(String(v))]))
    for (const key of Object.keys(env)) t.ok(key in schema.properties, `${name}: ${key} is in the ${command.role} schema`)
    t.doesNotThrow(() => loadConfig(schema, env), `${name}: its environment passes validation`)
  }
  t.ok(Object.values(compose.services).filter((s) => s.image === 'flashcrowd:latest').length >= 6, 'cache, frontend, backend, mailer, purger and migrate run the image')
})

t.test('health checks, start order and resource limits', async (t) => {
  for (const [name, service] of Object.entries(compose.services)) {
    t.ok(service.deploy?.resources?.limits?.memory && service.deploy?.resources?.limits?.cpus, `${name} has cpu and memory limits`)
    if (name !== 'migrate') t.ok(service.healthcheck?.test, `${name} has a health check`)
    for (const [dep, cond] of Object.entries(service.depends_on ?? {}) as Array<[string, any]>) {
      t.ok(compose.services[dep], `${name} depends on existing ${dep}`)
      t.ok(['service_healthy', 'service_completed_successfully'].includes(cond.condition), `${name} waits for ${dep} (${cond.condition})`)
    }
  }
  t.equal(compose.services.backend.depends_on.migrate.condition, 'service_completed_successfully', 'migrations run before the backends')
})

t.test('ports line up: haproxy → cache → frontend → backend', async (t) => {
  const s = compose.services
  const cachePort = s.cache.environment.PORT
  t.match(haproxy, new RegExp(`cache:${cachePort}\\b`), 'haproxy targets the cache port')
  const bind = /frontend flashcrowd\s+bind :(\d+)/.exec(haproxy)?.[1]
  t.ok(s.haproxy.ports.some((p: string) => p.endsWith(`:${bind}`)), 'the published port is the one haproxy binds')
  t.match(haproxy, /option httpchk GET \/-\/health/)
  t.equal(s.cache.environment.UPSTREAMS, `http://frontend:${s.frontend.environment.PORT}`)
  t.equal(s.frontend.environment.BACKEND_URL, `http://backend:${s.backend.environment.PORT}`)
})

t.test('issue 11: the visitor\'s address survives haproxy → cache → frontend → backend', async (t) => {
  const s = compose.services
  const front = /frontend flashcrowd\n([\s\S]*?)\n(?:backend|listen) /.exec(haproxy)?.[1] ?? ''
  t.match(front, /^\s*option forwardfor\s*$/m, 'HAProxy appends the address it saw')
  t.match(front, /http-request del-header X-Forwarded-For/i, 'and drops what a client claims')
  t.match(front, /http-request del-header Forwarded/i)
  const subnet = compose.networks?.default?.ipam?.config?.[0]?.subnet as string | undefined
  t.ok(subnet, 'the tier runs on a network with a known range')
  // Each role believes exactly the tier's own hops, never "anybody".
  for (const [service, variable] of [['cache', 'CACHE_TRUSTED_PROXIES'], ['frontend', 'FRONTEND_TRUSTED_PROXIES'], ['backend', 'BACKEND_TRUSTED_PROXIES']]) {
    const value = String(s[service].environment[variable] ?? '')
    t.equal(value, subnet, `${service}: ${variable} names the tier's network`)
  }
})

t.test('the image and its helper scripts exist', async (t) => {
  const dockerfile = readFileSync(path.join(ROOT, 'Dockerfile'), 'utf8')
  t.ok((dockerfile.match(/^FROM /gm) ?? []).length >= 2, 'multi-stage Dockerfile')
  for (const dir of dockerfile.matchAll(/^COPY (\w+) \.\/\1$/gm)) t.ok(existsSync(path.join(ROOT, dir[1])), `COPY ${dir[1]} exists`)
  for (const f of ['deploy/replica-entrypoint.sh', 'deploy/primary-init.sh']) t.ok(existsSync(path.join(ROOT, f)), f)
  const cluster = JSON.parse(readFileSync(path.join(ROOT, 'cluster.json'), 'utf8'))
  const ports = [cluster.front, ...cluster.caches, ...cluster.frontends, ...cluster.backends, ...cluster.mailers, cluster.replica, cluster.haproxyStats]
  t.equal(new Set(ports).size, ports.length, 'cluster.json names every port once')
  t.ok(cluster.caches.length >= 2 && cluster.frontends.length >= 3 && cluster.backends.length >= 2 && cluster.mailers.length >= 1)
})
