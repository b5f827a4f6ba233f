/**
 * deploy/monitoring: the scrape configurations, the campaign's rules and
 * alerts, and the dashboard. promtool checks the configurations and rules and
 * runs rules.test.yml (series the test writes, alerts it expects); then every
 * metric a rule or a dashboard panel names must be one a role actually
 * exports: each role is built with test dependencies, exercised, and scraped
 * through its own /-/metrics (no hand-written list of names).
 */
import t from 'tap'
import { spawnSync } from 'node:child_process'
import { mkdtempSync, readFileSync, writeFileSync, existsSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import YAML from 'yaml'
import { ROOT } from '../helpers/spawn.js'
import { scraper, METRICS_TOKEN } from '../helpers/metrics.js'
import { createTestDatabase } from '../helpers/database.js'
import { startBackend } from '../helpers/backend.js'
import { startFrontend, formPost } from '../frontend/helpers.js'
import { startMailer, startSmtp, queueEvents } from '../mailer/helpers.js'
import { startOrigin, startCache, send, closeAgent, admin, TOKEN as ADMIN_TOKEN } from '../cache/fixtures.js'
import { openDatabase } from '../helpers/database.js'
import { prometheusConfig } from '../../scripts/cluster-prometheus.js'
import { buildApp as buildPurger } from '../../purger/app.js'
import { loadPurgerConfig } from '../../purger/config.js'

const DIR = path.join(ROOT, 'deploy/monitoring')
const rules = YAML.parse(readFileSync(path.join(DIR, 'rules.yml'), 'utf8')) as { groups: Array<{ name: string, rules: Array<{ record?: string, alert?: string, expr: string }> }> }
const dashboard = JSON.parse(readFileSync(path.join(DIR, 'dashboard.json'), 'utf8')) as { panels: Array<{ type: string, title: string, targets?: Array<{ expr: string }> }>, annotations: { list: Array<{ expr?: string }> } }
const promtool = spawnSync('promtool', ['--version'], { encoding: 'utf8' }).status === 0

t.teardown(closeAgent)

function run (args: string[], cwd = DIR) {
  const r = spawnSync('promtool', args, { cwd, encoding: 'utf8' })
  return { ok: r.status === 0, out: `${r.stdout}${r.stderr}` }
}

t.test('promtool: the rules, their unit tests and every scrape configuration', { skip: promtool ? false : 'promtool is not installed (apt-get install prometheus)' }, async (t) => {
  const checked = run(['check', 'rules', 'rules.yml'])
  t.ok(checked.ok, checked.out)
  const tested = run(['test', 'rules', 'rules.test.yml'])
  t.ok(tested.ok, tested.out)
  // Container paths (compose, Kubernetes): the syntax; the cluster's generated file: all of it, files included.
  for (const file of ['prometheus-compose.yml', 'prometheus-kubernetes.yml']) {
    const r = run(['check', 'config', '--syntax-only', file])
    t.ok(r.ok, `${file}: ${r.out}`)
  }
  const dir = mkdtempSync(path.join(tmpdir(), 'fc-prometheus-'))
  const tokenFile = path.join(dir, 'metrics-token')
  writeFileSync(tokenFile, `${METRICS_TOKEN}\n`)
  const cluster = JSON.parse(readFileSync(path.join(ROOT, 'cluster.json'), 'utf8'))
  writeFileSync(path.join(dir, 'prometheus.yml'), prometheusConfig(cluster, { tokenFile, rulesFile: path.join(DIR, 'rules.yml') }))
  const full = run(['check', 'config', path.join(dir, 'prometheus.yml')])
  t.ok(full.ok, `the cluster's configuration: ${full.out}`)
  writeFileSync(path.join(dir, 'prometheus-cdn.yml'), prometheusConfig({ ...cluster, purger: 8601 }, { tokenFile, rulesFile: path.join(DIR, 'rules.yml') }))
  const cdn = run(['check', 'config', path.join(dir, 'prometheus-cdn.yml')])
  t.ok(cdn.ok, `the cluster's configuration with a purger: ${cdn.out}`)
  // The checks can fail: a rule naming a function that does not exist is refused.
  writeFileSync(path.join(dir, 'bad.yml'), 'groups: [{ name: x, rules: [{ record: "a:b", expr: "no_such_function(up)" }] }]\n')
  t.notOk(run(['check', 'rules', path.join(dir, 'bad.yml')]).ok, 'a broken rule is refused')
})

t.test('every role is scraped with the credential, by every configuration', async (t) => {
  const jobs = (file: string) => (YAML.parse(readFileSync(path.join(DIR, file), 'utf8')).scrape_configs as Array<{ job_name: string, metrics_path: string, authorization?: { credentials_file?: string } }>)
  const cluster = JSON.parse(readFileSync(path.join(ROOT, 'cluster.json'), 'utf8'))
  const generated = (ports: object) => YAML.parse(prometheusConfig(ports as typeof cluster, { tokenFile: '/t', rulesFile: '/r' })).scrape_configs as ReturnType<typeof jobs>
  const roles = ['flashcrowd-backend', 'flashcrowd-cache', 'flashcrowd-frontend', 'flashcrowd-mailer', 'flashcrowd-purger']
  // The cluster runs a purger only when a CDN is configured: its job is there exactly then.
  for (const [name, list, expected] of [['compose', jobs('prometheus-compose.yml'), roles], ['kubernetes', jobs('prometheus-kubernetes.yml'), roles],
    ['cluster with a CDN', generated({ ...cluster, purger: 8601 }), roles], ['cluster without a CDN', generated(cluster), roles.filter((r) => r !== 'flashcrowd-purger')]] as const) {
    t.same(list.map((j) => j.job_name).sort(), expected, `${name}: one job per role`)
    t.ok(list.every((j) => j.metrics_path === '/-/metrics' && j.authorization?.credentials_file), `${name}: /-/metrics with the METRICS_TOKEN`)
  }
  const purgerTargets = generated({ ...cluster, purger: 8601 }).find((j) => j.job_name === 'flashcrowd-purger') as { static_configs?: Array<{ targets: string[] }> } | undefined
  t.same(purgerTargets?.static_configs?.[0]?.targets, ['127.0.0.1:8601'], 'cluster: the purger\'s own port')
  const port = (file: string, job: string) => (YAML.parse(readFileSync(path.join(DIR, file), 'utf8')).scrape_configs as Array<{ job_name: string, dns_sd_configs: Array<{ port: number }> }>).find((j) => j.job_name === job)!.dns_sd_configs[0].port
  const ports = [cluster.front, ...cluster.caches, ...cluster.frontends, ...cluster.backends, ...cluster.mailers, cluster.replica, cluster.haproxyStats, cluster.prometheus]
  t.equal(new Set(ports).size, ports.length, 'cluster.json: Prometheus has a port of its own')

  const compose = YAML.parse(readFileSync(path.join(ROOT, 'docker-compose.yml'), 'utf8'), { merge: true }) as { services: Record<string, any>, secrets: Record<string, any> }
  t.ok(compose.services.prometheus.secrets.includes('metrics_token') && compose.secrets.metrics_token.environment === 'METRICS_TOKEN', 'compose: Prometheus reads METRICS_TOKEN as a secret')
  for (const role of ['cache', 'frontend', 'backend', 'mailer', 'purger']) t.match(compose.services[role].environment.METRICS_TOKEN, /METRICS_TOKEN/, `compose: the ${role} takes METRICS_TOKEN`)
  t.equal(String(port('prometheus-compose.yml', 'flashcrowd-purger')), compose.services.purger.environment.PORT, 'compose: the purger is scraped on the port it listens on')
  for (const s of ['prometheus', 'grafana']) {
    for (const volume of compose.services[s].volumes.filter((v: string) => v.startsWith('./'))) t.ok(existsSync(path.join(ROOT, volume.split(':')[0])), `compose: ${s} mounts ${volume.split(':')[0]}, which exists`)
  }
  t.equal(YAML.parse(readFileSync(path.join(DIR, 'grafana/datasources.yml'), 'utf8')).datasources[0].uid, 'prometheus', 'the data source the dashboard names')
})

const kubectl = spawnSync('kubectl', ['kustomize', path.join(ROOT, 'deploy/k8s')], { encoding: 'utf8' })
t.test('Kubernetes: Prometheus and Grafana with these very files, the token from the Secret on both sides', { skip: kubectl.error ? 'kubectl is not installed' : false }, async (t) => {
  t.equal(kubectl.status, 0, kubectl.stderr)
  type Obj = { kind: string, metadata: { name: string }, data?: Record<string, string>, stringData?: Record<string, string>, spec?: any }
  const objects = YAML.parseAllDocuments(kubectl.stdout).map((d) => d.toJS() as Obj).filter(Boolean)
  const deployment = (name: string) => objects.find((o) => o.kind === 'Deployment' && o.metadata.name === name)!
  const configMap = (name: string) => objects.find((o) => o.kind === 'ConfigMap' && o.metadata.name === name)!
  const volumes = (d: Obj) => Object.fromEntries((d.spec.template.spec.volumes as Array<{ name: string, configMap?: { name: string }, secret?: { secretName: string, items: Array<{ key: string }> } }>).map((v) => [v.name, v]))
  const prometheus = volumes(deployment('prometheus'))
  const config = configMap(prometheus.config.configMap!.name).data!
  t.equal(config['prometheus.yml'], readFileSync(path.join(DIR, 'prometheus-kubernetes.yml'), 'utf8'), 'the scrape configuration')
  t.equal(config['rules.yml'], readFileSync(path.join(DIR, 'rules.yml'), 'utf8'), 'the rules')
  const secret = objects.find((o) => o.kind === 'Secret' && o.metadata.name === 'flashcrowd-secrets')!.stringData!
  t.equal(prometheus['metrics-token'].secret?.secretName, 'flashcrowd-secrets')
  t.same(prometheus['metrics-token'].secret?.items.map((i) => i.key), ['METRICS_TOKEN'], 'the scraper\'s credential is the METRICS_TOKEN of the Secret')
  t.ok(secret.METRICS_TOKEN && secret.GRAFANA_ADMIN_PASSWORD, 'the Secret has both')
  for (const role of ['cache', 'frontend', 'backend', 'mailer', 'purger']) {
    const env = deployment(role).spec.template.spec.containers[0].env as Array<{ name: string, valueFrom?: { secretKeyRef?: { key: string } } }>
    t.equal(env.find((e) => e.name === 'METRICS_TOKEN')?.valueFrom?.secretKeyRef?.key, 'METRICS_TOKEN', `${role}: METRICS_TOKEN from the same Secret`)
    t.ok(objects.some((o) => o.kind === 'Service' && o.metadata.name === role && o.spec.clusterIP === 'None'), `${role}: a headless Service Prometheus resolves to its pods`)
  }
  const grafana = volumes(deployment('grafana'))
  t.equal(configMap(grafana.dashboards.configMap!.name).data!['flashcrowd.json'], readFileSync(path.join(DIR, 'dashboard.json'), 'utf8'), 'the dashboard')
  t.match(configMap(grafana.provisioning.configMap!.name).data!['datasources.yml'], /url: http:\/\/prometheus:9090/, 'Grafana reads the prometheus Service')
  t.ok(objects.some((o) => o.kind === 'Service' && o.metadata.name === 'prometheus'))
})

t.test('the dashboard: a row per role, every panel with a query on the provisioned data source', async (t) => {
  const rows = dashboard.panels.filter((p) => p.type === 'row').map((p) => p.title)
  for (const role of ['Cache', 'Frontend', 'Backend', 'Mailer', 'Purger', 'Database']) t.ok(rows.includes(role), `a ${role} row`)
  for (const p of dashboard.panels.filter((x) => x.type !== 'row')) {
    t.ok(p.targets && p.targets.length > 0 && p.targets.every((x) => x.expr.trim() !== ''), `${p.title}: has queries`)
    t.equal((p as { datasource?: { uid?: string } }).datasource?.uid, 'prometheus', `${p.title}: the provisioned data source`)
  }
})

/** Metric names a PromQL expression reads (not functions, keywords, labels, durations or strings). */
function metricNames (expr: string): string[] {
  const stripped = expr
    .replace(/"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'/g, '""') // strings
    .replace(/\{[^}]*\}/g, '') // label matchers
    .replace(/\[[^\]]*\]/g, '') // ranges and subqueries
    .replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, '') // label lists
    .replace(/\boffset\s+\d+[smhdwy]/g, '')
  const keywords = new Set(['and', 'or', 'unless', 'bool', 'offset', 'by', 'without', 'on', 'ignoring', 'group_left', 'group_right', 'inf', 'nan'])
  const names = new Set<string>()
  for (const m of stripped.matchAll(/([A-Za-z_:][A-Za-z0-9_:]*)\s*(\()?/g)) {
    if (m[2] !== undefined || keywords.has(m[1].toLowerCase())) continue // a function call or an operator
    names.add(m[1])
  }
  return [...names]
}

t.test('the name extraction finds metrics, not functions, labels or keywords', async (t) => {
  t.same(metricNames('sum by (role) (rate(flashcrowd_http_requests_total{status=~"5.."}[5m])) or on() x:y:z offset 30m > 2 * up'), ['flashcrowd_http_requests_total', 'x:y:z', 'up'])
  t.same(metricNames('histogram_quantile(0.99, sum by (le) (rate(a_bucket[5m])))'), ['a_bucket'])
})

/** Every sample name and every declared family (a labelled counter is exported before its first event), from Prometheus text. */
function exported (text: string): Set<string> {
  const names = new Set<string>()
  for (const line of text.split('\n')) {
    const type = /^# TYPE (\S+) (\w+)/.exec(line)
    if (type) {
      names.add(type[1])
      if (type[2] === 'histogram') for (const s of ['_bucket', '_sum', '_count']) names.add(type[1] + s)
      if (type[2] === 'summary') for (const s of ['_sum', '_count']) names.add(type[1] + s)
    } else if (line !== '' && !line.startsWith('#')) {
      names.add(/^[^{\s]+/.exec(line)![0])
    }
  }
  return names
}

t.test('issue 25: every rule and every dashboard query names a metric a role exports', async (t) => {
  const database = await createTestDatabase('embedded')
  t.teardown(database.close)
  const byRole: Record<string, Set<string>> = {}

  // Each role is exercised so that its labelled series exist; what each answers is other tests' business
  // (a loaded machine may shed a request), and a family is exported from its registration on.
  // backend: a write (the outbox, group commit, its pools and the primary's gauges).
  const backend = await startBackend(t, database.url, { BACKEND_MAX_EVENT_LOOP_DELAY_MS: '0' })
  const handle = openDatabase(t, database)
  const article = await handle.db.selectFrom('news').select('slug').executeTakeFirstOrThrow()
  await backend.post('/v1/comments', { news: article.slug, author: 'Metrics', body: 'counted' })
  // frontend: pages, a form post through the backend, an author's view and an invalidation; a primary pool beside the read pool.
  const frontend = await startFrontend(t, database.url, { readUrl: `${database.url}${database.url.includes('?') ? '&' : '?'}application_name=reads`, backendUrls: [backend.url], bus: backend.bus })
  await frontend.app.inject('/news')
  await frontend.app.inject('/news')
  const posted = await frontend.app.inject(formPost(`/news/${article.slug}/comments`, { author: 'Reader', body: 'seen' }))
  if (posted.statusCode === 303) await frontend.app.inject(String(posted.headers.location))
  // mailer: one message sent.
  const smtp = await startSmtp(t)
  const mailer = await startMailer(t, database.url, smtp.url)
  await queueEvents(handle, 1)
  await mailer.app.sender.runOnce()
  // cache: a miss, a hit, a purge, an origin 5xx.
  const origin = await startOrigin((req, res) => {
    if (req.url === '/broken') { res.statusCode = 500; res.end('x'); return }
    res.setHeader('cache-control', 'public, max-age=60'); res.end('page')
  })
  const cache = await startCache(origin.url)
  t.teardown(async () => { await cache.close(); await origin.close() })
  await send(cache.url + '/p')
  await send(cache.url + '/p')
  await send(cache.url + '/broken')
  await send(cache.url + '/p', { method: 'PURGE', headers: admin })
  // purger: one write's purge acknowledged by a flashcrowd edge (the cache above), so its per-CDN series exist.
  const purger = await buildPurger({
    config: loadPurgerConfig({ LOG_LEVEL: 'silent', METRICS_TOKEN, ADMIN_TOKEN, DATABASE_URL: database.url, CDN_FLASHCROWD_URLS: cache.url, PURGER_SETTLE_MS: '0' }),
    database: handle,
    logger: false,
    autoStart: false
  })
  t.teardown(() => purger.close())
  await purger.ready()
  await handle.pool.query(`insert into outbox (keys, created_at, published_at) values ($1, now() - interval '2 seconds', now() - interval '1 second')`, [['news']])
  t.ok(await purger.purger.intakeOnce() >= 1, 'the purger takes the published write')
  t.equal(await purger.purger.deliverOnce('flashcrowd'), 1, 'and the edge acknowledges its purge')

  const scrape = async (role: string, text: Promise<string>) => { byRole[role] = exported(await text) }
  await scrape('backend', fetch(`${backend.url}/-/metrics`, { headers: scraper }).then((r) => r.text()))
  await scrape('frontend', frontend.app.inject({ url: '/-/metrics', headers: scraper }).then((r) => r.body))
  await scrape('mailer', mailer.app.inject({ url: '/-/metrics', headers: scraper }).then((r) => r.body))
  await scrape('cache', send(cache.url + '/-/metrics', { headers: scraper }).then((r) => r.body))
  await scrape('purger', purger.inject({ url: '/-/metrics', headers: scraper }).then((r) => r.body))
  t.ok(byRole.purger.has('flashcrowd_cdn_purge_lag_seconds_bucket') && byRole.purger.has('flashcrowd_cdn_purge_queue_age_seconds'), 'the purger exports its lag and queue')
  const all = new Set(Object.values(byRole).flatMap((s) => [...s]))
  t.ok(all.size > 40, `${all.size} metric names scraped from the five roles`)
  t.notOk(all.has('flashcrowd_cache_requests_totl'), 'a misspelt name is not among them (the check can fail)')

  const recorded = new Set(rules.groups.flatMap((g) => g.rules.map((r) => r.record).filter((r): r is string => r !== undefined)))
  // Series Prometheus writes itself: `up` per target, `ALERTS` per firing alert.
  const prometheusOwn = new Set(['up', 'ALERTS'])
  const queries = [
    ...rules.groups.flatMap((g) => g.rules.map((r) => ({ where: `rules.yml ${r.record ?? r.alert}`, expr: r.expr }))),
    ...dashboard.panels.flatMap((p) => (p.targets ?? []).map((x) => ({ where: `dashboard "${p.title}"`, expr: x.expr }))),
    ...dashboard.annotations.list.filter((a) => a.expr).map((a) => ({ where: 'dashboard annotation', expr: a.expr! }))
  ]
  let names = 0
  for (const q of queries) {
    const found = metricNames(q.expr)
    t.ok(found.length > 0, `${q.where}: names a metric`)
    for (const name of found) {
      names++
      t.ok(all.has(name) || recorded.has(name) || prometheusOwn.has(name), `${q.where}: ${name} is ${recorded.has(name) ? 'recorded by rules.yml' : 'exported by a role'}`)
    }
  }
  // Each role's row shows that role's own metrics.
  for (const role of ['cache', 'frontend', 'backend', 'mailer', 'purger']) {
    t.ok(queries.some((q) => metricNames(q.expr).some((n) => byRole[role].has(n) && n.startsWith('flashcrowd_'))), `${role}: watched by at least one query`)
  }
  t.comment(`${queries.length} queries, ${names} metric references`)
})
