/**
 * No Kubernetes runs on the development machines, so deploy/k8s is kept
 * honest by everything short of applying it: kustomize renders it, every
 * object validates against the Kubernetes schemas (kubernetes-models), every
 * environment variable belongs to its role's schema and passes its
 * validation, every command exists, and ports, probes and selectors line up.
 * The database (a CloudNativePG Cluster) validates against the operator's
 * own CRD schema, kept in deploy/k8s/crds.
 */
import t from 'tap'
import { spawnSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import path from 'node:path'
import YAML from 'yaml'
import { Ajv } from 'ajv'
import addFormats from 'ajv-formats'
import { Type, type TObject } from '@sinclair/typebox'
import { ROOT } from '../helpers/spawn.js'
import { productionCommand } from '../helpers/production-command.js'
import { loadConfig, DatabaseEnv } from '../../common/config.js'
import { ROLE_SCHEMAS } from '../../scripts/env-doc.js'
import { PurgerEnv, checkPurgerConfig } from '../../purger/config.js'

type Obj = { apiVersion: string, kind: string, metadata: { name: string, namespace?: string }, spec?: any, data?: Record<string, string>, stringData?: Record<string, string> }

const kubectl = spawnSync('kubectl', ['kustomize', path.join(ROOT, 'deploy/k8s')], { encoding: 'utf8' })
if (kubectl.error) {
  t.test('deploy/k8s renders', { skip: 'kubectl is not installed' }, async () => {})
} else {
  const objects = YAML.parseAllDocuments(kubectl.stdout).map((d) => d.toJS() as Obj).filter(Boolean)
  const schemas: Record<string, TObject> = { ...ROLE_SCHEMAS, migrate: Type.Object({ DATABASE_URL: DatabaseEnv.DATABASE_URL }) }
  const find = (kind: string, name: string) => objects.find((o) => o.kind === kind && o.metadata.name === name)

  t.test('kustomize renders the whole tier', async (t) => {
    t.equal(kubectl.status, 0, kubectl.stderr)
    for (const [kind, name] of [['Deployment', 'cache'], ['Deployment', 'frontend'], ['Deployment', 'backend'], ['Deployment', 'mailer'], ['Deployment', 'purger'], ['Deployment', 'haproxy'], ['Job', 'flashcrowd-migrate'],
      ['HorizontalPodAutoscaler', 'frontend'], ['HorizontalPodAutoscaler', 'backend'], ['PodDisruptionBudget', 'frontend'], ['PodDisruptionBudget', 'backend'], ['PodDisruptionBudget', 'cache'],
      ['Service', 'frontend'], ['Service', 'cache'], ['Service', 'purger'], ['Service', 'web'], ['ConfigMap', 'flashcrowd-config'], ['Secret', 'flashcrowd-secrets']] as const) {
      t.ok(find(kind, name), `${kind}/${name}`)
    }
    t.ok(objects.filter((o) => o.kind !== 'Namespace').every((o) => o.metadata.namespace === 'flashcrowd'), 'everything in one namespace')
    t.equal(find('Service', 'frontend')!.spec.clusterIP, 'None', 'frontends behind a headless Service (the cache director resolves every pod)')
  })

  /** Kinds of an operator's API group, validated against its CRD below (kubernetes-models knows only Kubernetes' own). */
  const custom = (o: Obj) => o.apiVersion.startsWith('postgresql.cnpg.io/')

  t.test('every object validates against the Kubernetes schemas', async (t) => {
    for (const o of objects.filter((x) => !custom(x))) {
      const [group, version] = o.apiVersion.includes('/') ? o.apiVersion.split('/') : ['', o.apiVersion]
      const modulePath = `kubernetes-models/${group ? `${group}/` : ''}${version}/${o.kind}`
      const mod = await import(modulePath) as Record<string, new (data: unknown) => { validate (): void }>
      const Model = mod[o.kind]
      t.ok(Model, `${o.kind} model`)
      t.doesNotThrow(() => new Model(o).validate(), `${o.kind}/${o.metadata.name}`)
    }
    // The check can fail: a wrong type is refused.
    const { Deployment } = await import('kubernetes-models/apps/v1/Deployment')
    const bad = structuredClone(find('Deployment', 'cache')) as Obj
    bad.spec.template.spec.containers[0].ports[0].containerPort = '8080'
    t.throws(() => new Deployment(bad as never).validate(), 'a string port is refused')
  })

  t.test('commands exist, env names belong to the role\'s schema and validate, ports and probes line up', async (t) => {
    const config = find('ConfigMap', 'flashcrowd-config')!.data!
    const secrets = find('Secret', 'flashcrowd-secrets')!.stringData!
    const workloads = objects.filter((o) => o.kind === 'Deployment' || o.kind === 'Job')
    for (const w of workloads) {
      const pod = w.spec.template.spec
      for (const c of [...(pod.initContainers ?? []).map((x: object) => ({ ...x, init: true })), ...pod.containers]) {
        if (c.image !== undefined && !String(c.image).includes('flashcrowd')) continue
        // `args` only: the image's entrypoint (tini) stays PID 1; the role is the built code, without npm or tsx.
        t.equal(c.command, undefined, `${w.metadata.name}/${c.name}: keeps the image's entrypoint`)
        const command = productionCommand(c.args)
        if (typeof command === 'string') { t.fail(`${w.metadata.name}/${c.name}: ${command}`); continue }
        const script = command.role
        const schema = schemas[script]
        t.ok(schema, `a config schema for ${script}`)
        const env: Record<string, string> = {}
        for (const ref of c.envFrom ?? []) if (ref.configMapRef) Object.assign(env, config)
        for (const e of c.env ?? []) {
          if (e.value !== undefined) env[e.name] = e.value
          else if (e.valueFrom?.secretKeyRef) {
            t.ok(e.valueFrom.secretKeyRef.key in secrets, `${e.name}: the Secret has ${e.valueFrom.secretKeyRef.key}`)
            env[e.name] = secrets[e.valueFrom.secretKeyRef.key]
          } else if (e.valueFrom?.configMapKeyRef) {
            t.equal(e.valueFrom.configMapKeyRef.name, 'flashcrowd-config', `${e.name}: from the shared ConfigMap`)
            t.ok(e.valueFrom.configMapKeyRef.key in config, `${e.name}: the ConfigMap has ${e.valueFrom.configMapKeyRef.key}`)
            env[e.name] = config[e.valueFrom.configMapKeyRef.key]
          }
        }
        for (const key of Object.keys(env)) t.ok(key in schema.properties, `${w.metadata.name}/${c.name}: ${key} is in the ${script} schema`)
        t.doesNotThrow(() => loadConfig(schema, env), `${w.metadata.name}/${c.name}: its environment passes validation`)
        if (w.kind === 'Deployment' && c.init !== true) {
          const port = c.ports.find((p: { name: string }) => p.name === 'http')
          t.equal(String(port.containerPort), env.PORT, `${w.metadata.name}: the container port is the PORT it listens on`)
          for (const probe of [c.readinessProbe, c.livenessProbe]) {
            t.equal(probe.httpGet.path, '/-/health', `${w.metadata.name}: probes on /-/health`)
            t.equal(probe.httpGet.port, 'http')
          }
        }
      }
    }
    for (const kind of ['Service', 'PodDisruptionBudget']) {
      for (const o of objects.filter((x) => x.kind === kind)) {
        const selector = kind === 'Service' ? o.spec.selector : o.spec.selector.matchLabels
        const target = objects.find((d) => d.kind === 'Deployment' && Object.entries(selector).every(([k, v]) => d.spec.template.metadata.labels[k] === v))
        t.ok(target, `${kind}/${o.metadata.name} selects a Deployment`)
      }
    }
    for (const hpa of objects.filter((o) => o.kind === 'HorizontalPodAutoscaler')) {
      t.ok(find('Deployment', hpa.spec.scaleTargetRef.name), `HPA ${hpa.metadata.name} scales an existing Deployment`)
      t.ok(hpa.spec.minReplicas >= find('PodDisruptionBudget', hpa.metadata.name)!.spec.minAvailable + 1, `${hpa.metadata.name}: minReplicas leaves room for a disruption`)
    }
    const frontend = find('Deployment', 'frontend')!.spec.template.spec.containers[0].env as Array<{ name: string, value?: string }>
    const cache = find('Deployment', 'cache')!.spec.template.spec.containers[0].env as Array<{ name: string, value?: string }>
    t.match(cache.find((e) => e.name === 'UPSTREAMS')!.value, /^http:\/\/frontend\.flashcrowd\.svc\.cluster\.local:3000$/, 'the cache reaches the frontends\' headless Service on their port')
    t.match(frontend.find((e) => e.name === 'BACKEND_URL')!.value, /^http:\/\/backend\.flashcrowd\.svc\.cluster\.local:3001$/)
    const haproxy = find('ConfigMap', 'haproxy')!.data!['haproxy.cfg']
    t.match(haproxy, /balance uri/, 'URI hashing to the cache pods')
    t.match(haproxy, /hash-type consistent/)
    t.match(haproxy, /option forwardfor/, 'the visitor\'s address travels on')
    t.match(haproxy, /cache\.flashcrowd\.svc\.cluster\.local:8080/)
    // The visitor's address travels HAProxy → cache → frontend → backend: each hop trusts the one before.
    for (const [deployment, name] of [['cache', 'CACHE_TRUSTED_PROXIES'], ['frontend', 'FRONTEND_TRUSTED_PROXIES'], ['backend', 'BACKEND_TRUSTED_PROXIES']]) {
      const env = find('Deployment', deployment)!.spec.template.spec.containers[0].env as Array<{ name: string, value?: string }>
      t.ok(env.find((e) => e.name === name)?.value, `${deployment} names its trusted hops (${name})`)
    }
  })

  t.test('the purger: off until a CDN is configured, then complete; hardened like the image\'s user', async (t) => {
    const purger = find('Deployment', 'purger')!
    const pod = purger.spec.template.spec
    const c = pod.containers[0]
    const config = find('ConfigMap', 'flashcrowd-config')!.data!
    const secrets = find('Secret', 'flashcrowd-secrets')!.stringData!
    const env: Record<string, string> = {}
    for (const e of c.env) env[e.name] = e.value ?? (e.valueFrom.secretKeyRef ? secrets[e.valueFrom.secretKeyRef.key] : config[e.valueFrom.configMapKeyRef.key])
    // The base configures no CDN: the purger would exit, so it runs no replica.
    t.throws(() => checkPurgerConfig(loadConfig(PurgerEnv, env)), 'without the CDN\'s Secret the purger has nothing to purge')
    t.equal(purger.spec.replicas, 0, 'so the base runs none')
    const cdnSecret = (c.envFrom ?? []).find((r: { secretRef?: { name: string } }) => r.secretRef)?.secretRef
    t.same(cdnSecret, { name: 'flashcrowd-cdn', optional: true }, 'the CDN\'s settings come whole from an optional Secret')
    t.notOk(find('Secret', 'flashcrowd-cdn'), 'which the operator creates (none is rendered: no placeholder CDN is ever purged)')
    // What docs/cdn.md tells an operator to put in it completes the configuration.
    const cloudflare = { CDN_PROVIDER: 'cloudflare', PURGER_CLOUDFLARE_ZONE_ID: 'zone', PURGER_CLOUDFLARE_API_TOKEN: 'cf-token' }
    t.doesNotThrow(() => checkPurgerConfig(loadConfig(PurgerEnv, { ...env, ...cloudflare })), 'with the Secret: Cloudflare')
    t.doesNotThrow(() => checkPurgerConfig(loadConfig(PurgerEnv, { ...env, CDN_FLASHCROWD_URLS: 'http://edge-1:8080' })), 'with the Secret: flashcrowd edges (the ADMIN_TOKEN is there)')
    t.match(pod.securityContext, { runAsNonRoot: true, runAsUser: 1000 }, 'runs as the image\'s user')
    for (const x of [...pod.initContainers, ...pod.containers]) {
      t.match(x.securityContext, { allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: { drop: ['ALL'] } }, `${x.name}: no privilege, no writes, no capabilities`)
    }
    t.ok(pod.initContainers.some((x: { args: string[] }) => x.args.join(' ') === 'node dist/scripts/migrate.js'), 'on the migrated schema (cdn_purges)')
  })

  t.test('HAProxy accepts the rendered configuration', async (t) => {
    const haproxy = spawnSync('haproxy', ['-v'], { encoding: 'utf8' })
    if (haproxy.error) { t.comment('haproxy is not installed: its check is skipped'); t.pass('nothing to run the check with'); return }
    const { mkdtempSync, writeFileSync } = await import('node:fs')
    const { tmpdir } = await import('node:os')
    const dir = mkdtempSync(path.join(tmpdir(), 'fc-haproxy-'))
    const file = path.join(dir, 'haproxy.cfg')
    writeFileSync(file, find('ConfigMap', 'haproxy')!.data!['haproxy.cfg'])
    const check = spawnSync('haproxy', ['-c', '-f', file], { encoding: 'utf8' })
    t.equal(check.status, 0, check.stdout + check.stderr)
  })
}

if (!kubectl.error) {
  const objects = YAML.parseAllDocuments(kubectl.stdout).map((d) => d.toJS() as Obj).filter(Boolean)
  const crd = YAML.parse(readFileSync(path.join(ROOT, 'deploy/k8s/crds/postgresql.cnpg.io_clusters.yaml'), 'utf8'))
  const version = crd.spec.versions.find((v: { name: string }) => v.name === 'v1')
  // The CRD's structural schema: x-kubernetes-* extensions are Kubernetes' own keywords (strict off lets them be).
  const ajv = new Ajv({ strict: false, allErrors: true })
  addFormats.default(ajv)
  const validate = ajv.compile(version.schema.openAPIV3Schema)
  const errors = () => ajv.errorsText(validate.errors, { separator: '; ' })

  t.test('the database: a CloudNativePG Cluster valid by the operator\'s own CRD, wired into the roles', async (t) => {
    t.equal(crd.spec.names.kind, 'Cluster')
    t.equal(crd.spec.group, 'postgresql.cnpg.io')
    const clusters = objects.filter((o) => o.kind === 'Cluster')
    t.equal(clusters.length, 1, 'one Cluster')
    const cluster = clusters[0]
    t.equal(cluster.apiVersion, `${crd.spec.group}/${version.name}`)
    t.ok(validate(cluster), `Cluster/${cluster.metadata.name} validates: ${errors()}`)
    t.equal(cluster.spec.instances, 3, 'three instances')
    t.ok(cluster.spec.postgresql.synchronous.number >= 1, 'a synchronous replica')
    t.equal(cluster.spec.postgresql.synchronous.dataDurability, 'required', 'commits wait for it')
    // Every Secret the Cluster names is rendered too.
    for (const name of [cluster.spec.bootstrap.initdb.secret.name, ...cluster.spec.managed.roles.map((r: { passwordSecret: { name: string } }) => r.passwordSecret.name)]) {
      t.ok(objects.find((o) => o.kind === 'Secret' && o.metadata.name === name), `Secret/${name}`)
    }
    // The roles reach the Services the operator keeps pointed: -rw at the primary, -ro at the standbys.
    const secrets = objects.find((o) => o.kind === 'Secret' && o.metadata.name === 'flashcrowd-secrets')!.stringData!
    const ns = cluster.metadata.namespace
    const write = new URL(secrets.DATABASE_URL)
    const read = new URL(secrets.DATABASE_READ_URL)
    t.equal(write.hostname, `${cluster.metadata.name}-rw.${ns}.svc`, 'DATABASE_URL is the Cluster\'s -rw Service')
    t.equal(read.hostname, `${cluster.metadata.name}-ro.${ns}.svc`, 'DATABASE_READ_URL is the Cluster\'s -ro Service')
    t.equal(write.pathname.slice(1), cluster.spec.bootstrap.initdb.database, 'the database the Cluster creates')
    t.equal(read.pathname.slice(1), cluster.spec.bootstrap.initdb.database)
    const owner = objects.find((o) => o.metadata.name === cluster.spec.bootstrap.initdb.secret.name)!.stringData!
    t.equal(write.username, owner.username, 'DATABASE_URL logs in as the owner the Cluster creates')
    t.equal(write.username, cluster.spec.bootstrap.initdb.owner)
    const reader = cluster.spec.managed.roles.find((r: { name: string }) => r.name === read.username)
    t.ok(reader?.login, 'DATABASE_READ_URL logs in as a role the Cluster manages')
    for (const deployment of ['backend', 'mailer', 'purger']) {
      const env = objects.find((o) => o.kind === 'Deployment' && o.metadata.name === deployment)!.spec.template.spec.containers[0].env as Array<{ name: string, valueFrom?: { secretKeyRef?: { key: string } } }>
      t.equal(env.find((e) => e.name === 'DATABASE_URL')?.valueFrom?.secretKeyRef?.key, 'DATABASE_URL', `${deployment} writes through the -rw Service`)
    }
    const frontend = objects.find((o) => o.kind === 'Deployment' && o.metadata.name === 'frontend')!.spec.template.spec.containers[0].env as Array<{ name: string, valueFrom?: { secretKeyRef?: { key: string } } }>
    t.equal(frontend.find((e) => e.name === 'DATABASE_READ_URL')?.valueFrom?.secretKeyRef?.key, 'DATABASE_READ_URL', 'the frontends read through the -ro Service')
  })

  t.test('the CRD check can fail: a wrong type, an unknown value and a missing field are refused', async (t) => {
    const cluster = objects.find((o) => o.kind === 'Cluster')!
    const wrongType = structuredClone(cluster)
    wrongType.spec.instances = '3'
    t.notOk(validate(wrongType), 'instances as a string')
    const badEnum = structuredClone(cluster)
    badEnum.spec.postgresql.synchronous.method = 'all'
    t.notOk(validate(badEnum), 'an unknown synchronous method')
    const missing = structuredClone(cluster)
    delete missing.spec.postgresql.synchronous.method
    t.notOk(validate(missing), 'a synchronous section without its method')
  })
}
