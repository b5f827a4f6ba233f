/**
 * deploy/k8s/loadtest, kept honest the way deploy/k8s is (no Kubernetes on
 * the development machines): kustomize renders it, every object validates
 * against the Kubernetes schemas, and the coordinator's and agents' command
 * lines, with the ConfigMap's values substituted as the kubelet would, are
 * accepted by the loadtest CLI and point at each other.
 */
import t from 'tap'
import { spawnSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import path from 'node:path'
import YAML from 'yaml'
import { parseCommand, type Command } from '../../loadtest/cli.js'

type Obj = { apiVersion: string, kind: string, metadata: { name: string, namespace?: string }, spec?: any, data?: Record<string, string>, stringData?: Record<string, string> }
type KeyRef = { name: string, key: string }
type Container = { name: string, command: string[], env?: Array<{ name: string, value?: string, valueFrom?: { configMapKeyRef?: KeyRef, secretKeyRef?: KeyRef } }>, ports?: Array<{ name: string, containerPort: number }>, resources?: any }

const ROOT = path.join(import.meta.dirname, '../..')
const kubectl = spawnSync('kubectl', ['kustomize', path.join(ROOT, 'deploy/k8s/loadtest')], { encoding: 'utf8' })
const io = { stdout: process.stdout, stderr: process.stderr }

if (kubectl.error) {
  t.test('deploy/k8s/loadtest renders', { skip: 'kubectl is not installed' }, async () => {})
} else {
  const objects = YAML.parseAllDocuments(kubectl.stdout).map((d) => d.toJS() as Obj).filter(Boolean)
  const find = (kind: string, name: string): Obj | undefined => objects.find((o) => o.kind === kind && o.metadata.name === name)
  const config = (): Record<string, string> => find('ConfigMap', 'loadtest-config')!.data!
  /** The container's environment, from the ConfigMap and the Secrets, as the kubelet builds it. */
  const envOf = (c: Container, cm: Record<string, string>): Record<string, string> => {
    const env: Record<string, string> = {}
    for (const e of c.env ?? []) {
      if (e.value !== undefined) env[e.name] = e.value
      else if (e.valueFrom?.configMapKeyRef) {
        const key = e.valueFrom.configMapKeyRef.key
        if (!(key in cm)) throw new Error(`${c.name}: ${e.name} reads ${key}, which the ConfigMap lacks`)
        env[e.name] = cm[key]
      } else if (e.valueFrom?.secretKeyRef) {
        const { name, key } = e.valueFrom.secretKeyRef
        const data = find('Secret', name)?.stringData ?? {}
        if (!(key in data)) throw new Error(`${c.name}: ${e.name} reads ${key} of Secret ${name}, which it lacks`)
        env[e.name] = data[key]
      }
    }
    return env
  }
  /** The container's command with $(VAR) expanded from its env, as the kubelet does. */
  const argv = (c: Container, cm: Record<string, string>): string[] => {
    const env = envOf(c, cm)
    return c.command.map(a => a.replace(/\$\(([A-Z_][A-Z0-9_]*)\)/g, (_, n: string) => {
      if (!(n in env)) throw new Error(`${c.name}: $(${n}) is not in its environment`)
      return env[n]
    }))
  }
  const container = (job: string): Container => find('Job', job)!.spec.template.spec.containers[0] as Container
  const cli = (args: string[]): string[] => {
    if (args.slice(0, 4).join(' ') !== 'npm run loadtest --') throw new Error(`not npm run loadtest --: ${args.join(' ')}`)
    return args.slice(4)
  }

  t.test('kustomize renders a coordinator Job, its Service, an Indexed Job of agents and the ConfigMap', async (t) => {
    t.equal(kubectl.status, 0, kubectl.stderr)
    for (const [kind, name] of [['Namespace', 'flashcrowd-loadtest'], ['ConfigMap', 'loadtest-config'], ['Job', 'loadtest-coordinator'], ['Service', 'loadtest-coordinator'], ['Job', 'loadtest-agents'], ['PersistentVolumeClaim', 'loadtest-results'], ['Secret', 'loadtest-token']] as const) {
      t.ok(find(kind, name), `${kind}/${name}`)
    }
    t.ok(objects.filter((o) => o.kind !== 'Namespace').every((o) => o.metadata.namespace === 'flashcrowd-loadtest'), 'everything in its own namespace')
    const agents = find('Job', 'loadtest-agents')!.spec
    t.equal(agents.completionMode, 'Indexed')
    t.equal(agents.completions, agents.parallelism, 'one completion per agent')
    t.equal(find('Job', 'loadtest-coordinator')!.spec.template.spec.restartPolicy, 'Never', 'a coordinator is not restarted into a second run')
    t.match(config().TARGET_URL, /^https?:\/\//, 'the target URL comes from the ConfigMap')
    const pkg = JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { scripts: Record<string, string> }
    t.ok(pkg.scripts.loadtest, 'npm run loadtest exists')
  })

  t.test('every object validates against the Kubernetes schemas', async (t) => {
    for (const o of objects) {
      const [group, version] = o.apiVersion.includes('/') ? o.apiVersion.split('/') : ['', o.apiVersion]
      const mod = await import(`kubernetes-models/${group ? `${group}/` : ''}${version}/${o.kind}`) as Record<string, new (data: unknown) => { validate (): void }>
      t.doesNotThrow(() => new mod[o.kind](o).validate(), `${o.kind}/${o.metadata.name}`)
    }
    const { Job } = await import('kubernetes-models/batch/v1/Job')
    const bad = structuredClone(find('Job', 'loadtest-agents')) as Obj
    bad.spec.parallelism = '4'
    t.throws(() => new Job(bad as never).validate(), 'the check has teeth: a string count is refused')
  })

  t.test('the command lines are accepted by the CLI and point at each other', async (t) => {
    const cm = config()
    const coordinatorArgs = cli(argv(container('loadtest-coordinator'), cm))
    const coordinatorEnv = envOf(container('loadtest-coordinator'), cm)
    const run = await parseCommand(coordinatorArgs, { ...io, env: coordinatorEnv }) as Extract<Command, { kind: 'run' }>
    t.equal(run.kind, 'run')
    t.equal(run.opts.url, new URL(cm.TARGET_URL).toString(), 'the run targets the ConfigMap\'s URL')
    t.equal(run.opts.scenario.name, cm.SCENARIO)
    t.same(run.opts.thresholds.map(x => x.expr), [cm.THRESHOLD_P99, cm.THRESHOLD_ERRORS])
    t.same(run.opts.abortOn!.map(x => x.expr), [cm.ABORT_ON])
    const parallelism = find('Job', 'loadtest-agents')!.spec.parallelism as number
    t.equal(run.coordinator?.agents, parallelism, 'the coordinator waits for as many agents as the Job runs')
    const service = find('Service', 'loadtest-coordinator')!
    const port = (container('loadtest-coordinator').ports ?? []).find(p => p.name === service.spec.ports[0].targetPort)
    t.equal(run.coordinator?.port, port?.containerPort, 'it listens on the port its Service sends to')
    t.equal(run.coordinator?.host, '0.0.0.0')
    const podLabels = find('Job', 'loadtest-coordinator')!.spec.template.metadata.labels as Record<string, string>
    t.ok(Object.entries(service.spec.selector as Record<string, string>).every(([k, v]) => podLabels[k] === v), 'the Service selects the coordinator pod')

    const agentEnv = envOf(container('loadtest-agents'), cm)
    const agent = await parseCommand(cli(argv(container('loadtest-agents'), cm)), { ...io, env: agentEnv }) as Extract<Command, { kind: 'agent' }>
    t.equal(agent.kind, 'agent')
    const join = new URL(agent.agent.join)
    t.equal(join.hostname, `${service.metadata.name}.${service.metadata.namespace}.svc.cluster.local`, 'agents join the coordinator\'s Service')
    t.equal(Number(join.port), service.spec.ports[0].port)
    t.equal(agent.agent.workers, Number(cm.AGENT_WORKERS))
    t.ok(agent.agent.workers <= Number(container('loadtest-agents').resources.limits.cpu), 'no more generator threads than CPUs')
    t.ok((agent.agent.joinWait ?? 0) >= 60_000, 'agents wait for a coordinator that starts after them')

    t.ok(agentEnv.LOADTEST_TOKEN && agentEnv.LOADTEST_TOKEN === coordinatorEnv.LOADTEST_TOKEN, 'coordinator and agents read the token from one Secret')
    t.equal(agent.agent.token, agentEnv.LOADTEST_TOKEN, 'the agent sends it')
    t.ok(find('Secret', 'loadtest-token'), 'the Secret is part of the manifests')

    await t.rejects(parseCommand(coordinatorArgs.filter((a, i, all) => a !== '--listen' && all[i - 1] !== '--listen'), { ...io, env: coordinatorEnv }), /--agents needs --listen/, 'and the CLI check has teeth')
    await t.rejects(parseCommand(coordinatorArgs, { ...io, env: {} }), /--listen 0\.0\.0\.0:7700 takes agents from other machines: set the run's shared secret/, 'a coordinator on every interface needs the token')
  })
}
