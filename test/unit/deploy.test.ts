// Invariants of the shipped deployment files: the Kubernetes manifests in deploy/kubernetes and
// the Dockerfile. Nothing here can be checked by running them on this machine (no cluster, no
// Docker daemon), so the properties that keep them safe and working are pinned as data checks:
// HTTPS probes on the admin port, a hardened non-root container, a writable state volume, no
// usable key in a shipped Secret, and no Service or NetworkPolicy path around gatehouse.

import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { readdirSync, readFileSync, statSync } from 'node:fs'
import { describe, it } from 'node:test'
import { fileURLToPath } from 'node:url'
import { parse, parseAllDocuments } from 'yaml'
import { passwordProblem } from '../../src/config/passwordRules.ts'
import { leafAt } from '../../src/config/schema.ts'

const ROOT = fileURLToPath(new URL('../../', import.meta.url))
// A directory is one manifest: every .yaml in it but the kustomization (its objects refer to each other).
const MANIFESTS = ['deploy/kubernetes/standalone.yaml', 'deploy/kubernetes/sidecar-weaviate.yaml', 'deploy/kubernetes/replicas/'] as const

const ADMIN_PORT = 14000
const DATA_PORT = 8443
const STATE_DIR = '/var/lib/gatehouse'
const CONFIG_PATH = '/app/proxy.yaml'
const SECRETS_DIR = '/etc/gatehouse/secrets'
const DEFAULT_DRAIN_SECONDS = 10

interface HttpGet {
  path?: string
  port?: number | string
  scheme?: string
}
interface Probe {
  httpGet?: HttpGet
}
interface SecurityContext {
  runAsNonRoot?: boolean
  runAsUser?: number
  runAsGroup?: number
  fsGroup?: number
  privileged?: boolean
  readOnlyRootFilesystem?: boolean
  allowPrivilegeEscalation?: boolean
  capabilities?: { drop?: string[]; add?: string[] }
  seccompProfile?: { type?: string }
}
interface VolumeMount {
  name: string
  mountPath: string
  subPath?: string
  readOnly?: boolean
}
interface EnvVar {
  name: string
  value?: string
  valueFrom?: { secretKeyRef?: { name: string; key: string; optional?: boolean } }
}
interface Container {
  name: string
  image?: string
  args?: string[]
  command?: string[]
  env?: EnvVar[]
  ports?: { name?: string; containerPort: number }[]
  livenessProbe?: Probe
  readinessProbe?: Probe
  startupProbe?: Probe
  lifecycle?: { preStop?: { exec?: { command?: string[] } } }
  securityContext?: SecurityContext
  volumeMounts?: VolumeMount[]
  resources?: { requests?: Record<string, unknown>; limits?: Record<string, unknown> }
}
interface Volume {
  name: string
  emptyDir?: object | null
  persistentVolumeClaim?: { claimName: string }
  configMap?: { name: string; items?: { key: string; path: string }[] }
  secret?: { secretName: string }
}
interface PodSpec {
  containers: Container[]
  affinity?: { podAntiAffinity?: Record<string, unknown> }
  volumes?: Volume[]
  securityContext?: SecurityContext
  automountServiceAccountToken?: boolean
  enableServiceLinks?: boolean
  terminationGracePeriodSeconds?: number
}
interface K8sObject {
  apiVersion?: string
  kind?: string
  metadata?: { name?: string; namespace?: string }
  spec?: {
    replicas?: number
    template?: { metadata?: { labels?: Record<string, string> }; spec?: PodSpec }
    selector?: Record<string, string> & { matchLabels?: Record<string, string> }
    podSelector?: { matchLabels?: Record<string, string> }
    ports?: { name?: string; port: number; targetPort?: number | string }[]
    ingress?: { from?: { podSelector?: { matchLabels?: Record<string, string> } }[]; ports?: { port?: number | string }[] }[]
    minAvailable?: number | string
    maxUnavailable?: number | string
    volumeClaimTemplates?: { metadata?: { name?: string } }[]
    endpoints?: { port?: string; path?: string; scheme?: string }[]
  }
  data?: Record<string, string>
  stringData?: Record<string, string>
}

interface Manifest {
  file: string
  objects: K8sObject[]
}

/** The YAML files of a manifest: the file, or every .yaml of the directory but kustomization.yaml. */
function manifestFiles(file: string): string[] {
  if (!statSync(ROOT + file).isDirectory()) return [file]
  return readdirSync(ROOT + file)
    .filter((n) => n.endsWith('.yaml') && n !== 'kustomization.yaml')
    .sort()
    .map((n) => `${file}${n}`)
}

/** Every document of a manifest (file or directory); a YAML error fails the test that loads it. */
function loadManifest(file: string): Manifest {
  const objects: K8sObject[] = []
  for (const f of manifestFiles(file)) {
    for (const doc of parseAllDocuments(readFileSync(ROOT + f, 'utf8'))) {
      assert.deepEqual(doc.errors.map(String), [], `${f}: YAML errors`)
      const value: unknown = doc.toJS()
      if (value === null || value === undefined) continue
      objects.push(value as K8sObject)
    }
  }
  assert.ok(objects.length > 0, `${file}: no documents`)
  return { file, objects }
}

/** Whether every label of `selector` is on `labels` (an empty selector selects nothing here). */
function selects(selector: Record<string, string> | undefined, labels: Record<string, string> | undefined): boolean {
  const entries = Object.entries(selector ?? {}).filter(([, v]) => typeof v === 'string')
  return entries.length > 0 && entries.every(([k, v]) => labels?.[k] === v)
}

/** The pod labels of the workloads that run a gatehouse container. */
function gatehousePodLabels(m: Manifest): Record<string, string>[] {
  return m.objects
    .filter((o) => o.spec?.template?.spec?.containers.some((c) => c.name === 'gatehouse') === true)
    .map((o) => o.spec?.template?.metadata?.labels ?? {})
}

/** Secret keys that containers read through env valueFrom.secretKeyRef (passwords), as "secret/key". */
function envSecretKeys(m: Manifest): Set<string> {
  const out = new Set<string>()
  for (const { pod } of podSpecs(m)) {
    for (const c of pod.containers) for (const e of c.env ?? []) if (e.valueFrom?.secretKeyRef) out.add(`${e.valueFrom.secretKeyRef.name}/${e.valueFrom.secretKeyRef.key}`)
  }
  return out
}

function find(m: Manifest, kind: string, name: string): K8sObject {
  const obj = m.objects.find((o) => o.kind === kind && o.metadata?.name === name)
  assert.ok(obj, `${m.file}: ${kind} ${name} is referenced but not declared`)
  return obj
}

/** The pod specs of the workload objects in a manifest. */
function podSpecs(m: Manifest): { owner: string; pod: PodSpec }[] {
  const workloads = ['Deployment', 'StatefulSet', 'DaemonSet']
  return m.objects
    .filter((o) => o.kind !== undefined && workloads.includes(o.kind))
    .map((o) => {
      const pod = o.spec?.template?.spec
      assert.ok(pod, `${m.file}: ${o.kind} ${o.metadata?.name} has no pod template`)
      return { owner: `${o.kind}/${o.metadata?.name}`, pod }
    })
}

/** Every gatehouse container, with its pod; at least one, or the checks below prove nothing. */
function gatehouseContainers(m: Manifest): { owner: string; pod: PodSpec; c: Container }[] {
  const found = podSpecs(m).flatMap(({ owner, pod }) =>
    pod.containers.filter((c) => c.name === 'gatehouse').map((c) => ({ owner, pod, c })),
  )
  assert.ok(found.length > 0, `${m.file}: no container named gatehouse`)
  return found
}

function mountAt(c: Container, mountPath: string): VolumeMount {
  const mount = c.volumeMounts?.find((v) => v.mountPath === mountPath)
  assert.ok(mount, `container ${c.name}: nothing mounted at ${mountPath}`)
  return mount
}

function volumeFor(pod: PodSpec, mount: VolumeMount): Volume {
  const volume = pod.volumes?.find((v) => v.name === mount.name)
  assert.ok(volume, `volume ${mount.name} (mounted at ${mount.mountPath}) is not declared in the pod`)
  return volume
}

/** The proxy.yaml a gatehouse container actually reads: the ConfigMap behind its /app/proxy.yaml mount. */
function mountedConfig(m: Manifest, pod: PodSpec, c: Container): Record<string, unknown> {
  const mount = mountAt(c, CONFIG_PATH)
  const volume = volumeFor(pod, mount)
  assert.ok(volume.configMap, `${CONFIG_PATH} must come from a ConfigMap`)
  const key = volume.configMap.items?.find((i) => i.path === mount.subPath)?.key ?? mount.subPath
  assert.ok(key, `${CONFIG_PATH} must be mounted with subPath (it is a file inside /app)`)
  const text = find(m, 'ConfigMap', volume.configMap.name).data?.[key]
  assert.equal(typeof text, 'string', `ConfigMap ${volume.configMap.name} has no key ${key}`)
  const config: unknown = parse(text as string)
  assert.ok(config !== null && typeof config === 'object', 'proxy.yaml is not a mapping')
  return config as Record<string, unknown>
}

function at(obj: unknown, dotted: string): unknown {
  let cur: unknown = obj
  for (const part of dotted.split('.')) {
    if (cur === null || typeof cur !== 'object') return undefined
    cur = (cur as Record<string, unknown>)[part]
  }
  return cur
}

/** Seconds of a simple duration such as `10s`, `2m` (only what the manifests use). */
function seconds(duration: string): number {
  const match = /^(\d+)(s|m)$/.exec(duration)
  assert.ok(match, `unsupported duration ${duration}`)
  return Number(match[1]) * (match[2] === 'm' ? 60 : 1)
}

function assertHttpsProbe(probe: Probe | undefined, path: string, what: string): void {
  assert.ok(probe?.httpGet, `${what}: missing httpGet probe`)
  assert.equal(probe.httpGet.path, path, `${what}: path`)
  assert.equal(probe.httpGet.port, ADMIN_PORT, `${what}: must probe the admin port ${ADMIN_PORT}`)
  assert.equal(probe.httpGet.scheme, 'HTTPS', `${what}: the admin listener speaks TLS, scheme must be HTTPS`)
}

for (const file of MANIFESTS) {
  describe(`deploy: ${file}`, () => {
    const m = loadManifest(file)

    it('every document is a named object without a hard-coded namespace', () => {
      for (const o of m.objects) {
        assert.ok(o.apiVersion && o.kind, `${file}: document without apiVersion/kind`)
        assert.ok(o.metadata?.name, `${file}: ${o.kind} without a name`)
        assert.equal(o.metadata.namespace, undefined, `${file}: ${o.kind}/${o.metadata.name} sets a namespace`)
      }
    })

    it('gatehouse has liveness /healthz and readiness /readyz over HTTPS on the admin port', () => {
      for (const { owner, c } of gatehouseContainers(m)) {
        assertHttpsProbe(c.livenessProbe, '/healthz', `${owner} livenessProbe`)
        assertHttpsProbe(c.readinessProbe, '/readyz', `${owner} readinessProbe`)
        if (c.startupProbe) assertHttpsProbe(c.startupProbe, '/healthz', `${owner} startupProbe`)
        const ports = (c.ports ?? []).map((p) => p.containerPort).sort((a, b) => a - b)
        assert.deepEqual(ports, [DATA_PORT, ADMIN_PORT], `${owner}: container ports`)
      }
    })

    it('gatehouse runs non-root, read-only, without privilege escalation or capabilities', () => {
      for (const { owner, pod, c } of gatehouseContainers(m)) {
        const sc = c.securityContext ?? {}
        const podSc = pod.securityContext ?? {}
        assert.equal(sc.runAsNonRoot ?? podSc.runAsNonRoot, true, `${owner}: runAsNonRoot`)
        const uid = sc.runAsUser ?? podSc.runAsUser
        assert.ok(uid !== undefined && uid !== 0, `${owner}: runAsUser must be a non-zero uid`)
        assert.equal(sc.readOnlyRootFilesystem, true, `${owner}: readOnlyRootFilesystem`)
        assert.equal(sc.allowPrivilegeEscalation, false, `${owner}: allowPrivilegeEscalation`)
        assert.notEqual(sc.privileged, true, `${owner}: privileged`)
        assert.deepEqual(sc.capabilities?.drop, ['ALL'], `${owner}: capabilities.drop`)
        assert.equal(sc.capabilities?.add, undefined, `${owner}: capabilities.add`)
        assert.equal((sc.seccompProfile ?? podSc.seccompProfile)?.type, 'RuntimeDefault', `${owner}: seccompProfile`)
        assert.equal(podSc.fsGroup, uid, `${owner}: fsGroup must let the runtime user write the state volume`)
        assert.equal(pod.automountServiceAccountToken, false, `${owner}: automountServiceAccountToken`)
        // A Service named gatehouse would otherwise inject GATEHOUSE_PORT=tcp://…, which is
        // gatehouse's own listen-port variable.
        assert.equal(pod.enableServiceLinks, false, `${owner}: enableServiceLinks`)
        assert.ok(c.resources?.requests && c.resources.limits, `${owner}: resource requests and limits`)
        assert.ok(c.resources.limits['memory'], `${owner}: memory limit`)
      }
    })

    it('gatehouse has writable volumes for the state directory and /tmp, and its config at /app/proxy.yaml', () => {
      for (const { owner, pod, c } of gatehouseContainers(m)) {
        for (const dir of [STATE_DIR, '/tmp']) {
          const mount = mountAt(c, dir)
          const volume = volumeFor(pod, mount)
          assert.notEqual(mount.readOnly, true, `${owner}: ${dir} must be writable`)
          assert.ok(volume.emptyDir !== undefined || volume.persistentVolumeClaim, `${owner}: ${dir} needs an emptyDir or a PVC`)
          if (volume.persistentVolumeClaim) find(m, 'PersistentVolumeClaim', volume.persistentVolumeClaim.claimName)
        }
        const config = mountedConfig(m, pod, c)
        assert.equal(at(config, 'stateDir') ?? STATE_DIR, STATE_DIR, `${owner}: stateDir must be the mounted volume`)
        assert.deepEqual(c.args, ['serve', '--config', CONFIG_PATH], `${owner}: args`)
      }
    })

    it('the API keys come from a Secret mounted read-only, and the shipped Secret holds no usable key', () => {
      for (const { owner, pod, c } of gatehouseContainers(m)) {
        const mount = mountAt(c, SECRETS_DIR)
        assert.equal(mount.readOnly, true, `${owner}: ${SECRETS_DIR} must be read-only`)
        assert.equal(mount.subPath, undefined, `${owner}: a subPath mount would not see Secret updates`)
        const volume = volumeFor(pod, mount)
        assert.ok(volume.secret, `${owner}: ${SECRETS_DIR} must be a Secret volume`)
        const secret = find(m, 'Secret', volume.secret.secretName)

        const config = mountedConfig(m, pod, c)
        assert.equal(at(config, 'authentication.apikey.enabled'), true, `${owner}: apikey authentication`)
        assert.equal(at(config, 'authentication.apikey.allowedKeys'), undefined, `${owner}: no inline keys in the ConfigMap`)
        const keysFile = at(config, 'authentication.apikey.allowedKeysFile')
        assert.equal(typeof keysFile, 'string', `${owner}: allowedKeysFile`)
        assert.ok((keysFile as string).startsWith(`${SECRETS_DIR}/`), `${owner}: allowedKeysFile must be in ${SECRETS_DIR}`)
        const key = (keysFile as string).slice(SECRETS_DIR.length + 1)
        assert.equal(typeof secret.stringData?.[key], 'string', `${owner}: Secret ${volume.secret.secretName} has no key ${key}`)
      }
      const secrets = m.objects.filter((o) => o.kind === 'Secret')
      assert.ok(secrets.length > 0, `${file}: no Secret`)
      // Passwords read through env (secretKeyRef) are one line; their consumers refuse the
      // placeholder (checked per manifest below). Key files are only comments.
      const passwords = envSecretKeys(m)
      for (const s of secrets) {
        assert.equal(s.data, undefined, `Secret ${s.metadata?.name}: use stringData with a placeholder`)
        const entries = Object.entries(s.stringData ?? {})
        assert.ok(entries.length > 0, `Secret ${s.metadata?.name}: empty`)
        for (const [k, value] of entries) {
          assert.match(value, /replace-me/, `Secret ${s.metadata?.name}: placeholder text`)
          if (passwords.has(`${s.metadata?.name}/${k}`)) continue
          // Only comments: gatehouse refuses to start (no key) instead of accepting a key that
          // is printed in a public file.
          const keys = value.split('\n').filter((line) => line.trim() !== '' && !line.trim().startsWith('#'))
          assert.deepEqual(keys, [], `Secret ${s.metadata?.name}: ships a usable key`)
        }
      }
    })

    it('the termination grace period covers the preStop delay and the drain', () => {
      for (const { owner, pod, c } of gatehouseContainers(m)) {
        const drain = at(mountedConfig(m, pod, c), 'shutdown.gracePeriod')
        const drainSeconds = typeof drain === 'string' ? seconds(drain) : DEFAULT_DRAIN_SECONDS
        const preStop = c.lifecycle?.preStop?.exec?.command
        const preStopSeconds = preStop?.[0] === 'sleep' ? Number(preStop[1]) : 0
        const grace = pod.terminationGracePeriodSeconds ?? 30
        assert.ok(grace > drainSeconds + preStopSeconds, `${owner}: terminationGracePeriodSeconds ${grace} <= ${drainSeconds} + ${preStopSeconds}`)
      }
    })

    it('Services and NetworkPolicies open only gatehouse ports', () => {
      const gatehousePorts = new Set<number | string>()
      for (const { c } of gatehouseContainers(m)) {
        for (const p of c.ports ?? []) {
          gatehousePorts.add(p.containerPort)
          if (p.name) gatehousePorts.add(p.name)
        }
      }
      // Services and policies in front of gatehouse's pods; another workload's (the shared
      // store's) are checked by their manifest's own tests.
      const podLabels = gatehousePodLabels(m)
      const frontsGatehouse = (sel: Record<string, string> | undefined): boolean => podLabels.some((l) => selects(sel, l))
      const services = m.objects.filter((o) => o.kind === 'Service' && frontsGatehouse(o.spec?.selector))
      assert.ok(services.length > 0, `${file}: no Service`)
      for (const svc of services) {
        const ports = svc.spec?.ports ?? []
        assert.ok(ports.some((p) => (p.targetPort ?? p.port) === DATA_PORT), `Service ${svc.metadata?.name}: no port to ${DATA_PORT}`)
        for (const p of ports) {
          const target = p.targetPort ?? p.port
          assert.ok(gatehousePorts.has(target), `Service ${svc.metadata?.name}: port ${target} bypasses gatehouse`)
        }
      }
      for (const np of m.objects.filter((o) => o.kind === 'NetworkPolicy' && frontsGatehouse(o.spec?.podSelector?.matchLabels))) {
        for (const rule of np.spec?.ingress ?? []) {
          assert.ok(rule.ports && rule.ports.length > 0, `NetworkPolicy ${np.metadata?.name}: a rule without ports allows every port`)
          for (const p of rule.ports) {
            assert.ok(p.port !== undefined && gatehousePorts.has(p.port), `NetworkPolicy ${np.metadata?.name}: port ${p.port} bypasses gatehouse`)
          }
        }
      }
    })
  })
}

describe('deploy: sidecar-weaviate.yaml specifics', () => {
  const m = loadManifest('deploy/kubernetes/sidecar-weaviate.yaml')

  it('gatehouse and Weaviate share one pod, and gatehouse reaches Weaviate over loopback', () => {
    const [entry] = gatehouseContainers(m)
    assert.ok(entry)
    const weaviate = entry.pod.containers.find((c) => c.image?.startsWith('cr.weaviate.io/semitechnologies/weaviate:'))
    assert.ok(weaviate, 'no Weaviate container next to gatehouse')
    assert.doesNotMatch(weaviate.image ?? '', /:latest$/, 'pin the Weaviate version')
    const config = mountedConfig(m, entry.pod, entry.c)
    assert.equal(at(config, 'upstream.url'), 'http://127.0.0.1:8080')
    assert.equal(at(config, 'upstream.profile'), 'weaviate')
    const data = mountAt(weaviate, '/var/lib/weaviate')
    assert.ok(volumeFor(entry.pod, data).persistentVolumeClaim, 'Weaviate data must be on a PersistentVolumeClaim')
  })

  it('a NetworkPolicy keeps Weaviate’s own ports closed', () => {
    assert.ok(m.objects.some((o) => o.kind === 'NetworkPolicy'), 'no NetworkPolicy')
  })
})

describe('deploy: replicas/ (several replicas on a shared store)', () => {
  const DIR = 'deploy/kubernetes/replicas/'
  const m = loadManifest(DIR)
  const deployment = find(m, 'Deployment', 'gatehouse')
  const [entry] = gatehouseContainers(m)
  assert.ok(entry)
  const env = (c: Container, name: string): EnvVar | undefined => c.env?.find((e) => e.name === name)

  it('kustomization.yaml lists every manifest of the folder but the ServiceMonitor, and every file parses', () => {
    const k = parse(readFileSync(`${ROOT}${DIR}kustomization.yaml`, 'utf8')) as { kind: string; resources: string[] }
    assert.equal(k.kind, 'Kustomization')
    const files = manifestFiles(DIR).map((f) => f.slice(DIR.length))
    assert.deepEqual([...k.resources].sort(), files.filter((f) => f !== 'servicemonitor.yaml'))
    const kinds = new Set(m.objects.map((o) => o.kind))
    for (const kind of ['ConfigMap', 'Secret', 'Deployment', 'Service', 'PodDisruptionBudget', 'StatefulSet', 'NetworkPolicy', 'ServiceMonitor']) assert.ok(kinds.has(kind), `no ${kind}`)
  })

  it('three gatehouse replicas, spread over nodes, behind a PodDisruptionBudget that keeps two', () => {
    assert.equal(deployment.spec?.replicas, 3)
    const labels = deployment.spec?.template?.metadata?.labels
    assert.ok(selects(deployment.spec?.selector?.matchLabels, labels), 'the Deployment selects its pods')
    assert.ok(entry.pod.affinity?.podAntiAffinity, 'podAntiAffinity')
    assert.match(JSON.stringify(entry.pod.affinity.podAntiAffinity), /kubernetes\.io\/hostname/)
    const pdbs = m.objects.filter((o) => o.kind === 'PodDisruptionBudget' && selects(o.spec?.selector?.matchLabels, labels))
    assert.equal(pdbs.length, 1, 'one PodDisruptionBudget for the gatehouse pods')
    const pdb = pdbs[0] as K8sObject
    assert.ok(pdb.spec?.minAvailable === 2 || pdb.spec?.maxUnavailable === 1, 'the PDB lets at most one of three go')
    assert.ok(entry.c.resources?.requests?.cpu && entry.c.resources.limits?.cpu, 'CPU request and limit')
  })

  it('the store: URL without a password, the password only from a Secret, never inline anywhere', () => {
    const url = env(entry.c, 'GATEHOUSE_STORE_URL')?.value
    assert.ok(url !== undefined, 'GATEHOUSE_STORE_URL')
    const u = new URL(url)
    assert.match(u.protocol, /^rediss?:$/)
    assert.equal(u.password, '', 'no password in the URL')
    const svc = find(m, 'Service', u.hostname)
    assert.ok(svc.spec?.ports?.some((p) => p.port === Number(u.port || 6379)), 'the URL names the store Service and its port')
    const pw = env(entry.c, 'GATEHOUSE_STORE_PASSWORD')
    assert.equal(pw?.value, undefined, 'GATEHOUSE_STORE_PASSWORD must not be inline')
    const ref = pw?.valueFrom?.secretKeyRef
    assert.ok(ref, 'GATEHOUSE_STORE_PASSWORD from a Secret')
    assert.equal(typeof find(m, 'Secret', ref.name).stringData?.[ref.key], 'string')
    const config = mountedConfig(m, entry.pod, entry.c)
    assert.equal(at(config, 'store.password'), undefined, 'no store password in the ConfigMap')
    assert.equal(at(config, 'authentication.local.enabled'), true, 'local users on: the reason for the shared store')
    // No container anywhere carries a password-like variable inline.
    for (const { owner, pod } of podSpecs(m)) {
      for (const c of pod.containers) {
        for (const e of c.env ?? []) if (/PASSWORD|AUTH|SECRET|TOKEN/.test(e.name)) assert.equal(e.value, undefined, `${owner} ${c.name}: ${e.name} is inline`)
      }
    }
    for (const cm of m.objects.filter((o) => o.kind === 'ConfigMap')) {
      for (const text of Object.values(cm.data ?? {})) assert.doesNotMatch(text, /^\s*(requirepass|masterauth)\s+\S/m, `ConfigMap ${cm.metadata?.name}: a password in the config`)
    }
  })

  it('the first admin comes from a Secret, and the shipped placeholder breaks the password rules (gatehouse exits 2)', () => {
    const ref = env(entry.c, 'GATEHOUSE_ADMIN_PASSWORD')?.valueFrom?.secretKeyRef
    assert.ok(ref, 'GATEHOUSE_ADMIN_PASSWORD from a Secret')
    const value = find(m, 'Secret', ref.name).stringData?.[ref.key]
    assert.equal(typeof value, 'string')
    assert.notEqual(passwordProblem(value as string), undefined, 'the placeholder must not be a usable password')
  })

  it('Valkey: a StatefulSet with a volume, the append-only file, noeviction, and it refuses the placeholder password', () => {
    const sts = find(m, 'StatefulSet', 'valkey')
    assert.equal(sts.spec?.replicas, 1, 'one primary (Cluster is not supported)')
    const pod = sts.spec?.template?.spec as PodSpec
    const c = pod.containers[0] as Container
    const data = mountAt(c, '/data')
    assert.ok(sts.spec?.volumeClaimTemplates?.some((t) => t.metadata?.name === data.name), '/data on a PersistentVolumeClaim')
    const confMount = mountAt(c, '/etc/valkey')
    const conf = find(m, 'ConfigMap', volumeFor(pod, confMount).configMap?.name as string).data?.['valkey.conf'] ?? ''
    assert.match(conf, /^appendonly yes$/m)
    assert.match(conf, /^maxmemory-policy noeviction$/m)
    assert.match(conf, /^include \/run\/valkey\/auth\.conf$/m)
    assert.equal(volumeFor(pod, mountAt(c, '/run/valkey')).emptyDir !== undefined, true)
    assert.ok(c.readinessProbe && c.livenessProbe, 'Valkey probes')
    assert.equal(c.securityContext?.readOnlyRootFilesystem, true)
    // The password reaches Valkey through the included file, from a Secret; the command's guard
    // refuses the shipped placeholder (run here with sh, as the container would).
    const ref = c.env?.find((e) => e.name === 'STORE_PASSWORD')?.valueFrom?.secretKeyRef
    assert.ok(ref, 'STORE_PASSWORD from a Secret')
    assert.deepEqual(ref, env(entry.c, 'GATEHOUSE_STORE_PASSWORD')?.valueFrom?.secretKeyRef, 'Valkey and gatehouse read the same Secret key')
    const placeholder = find(m, 'Secret', ref.name).stringData?.[ref.key] as string
    assert.equal(c.command?.slice(0, 2).join(' '), 'sh -c')
    const script = c.command?.[2] as string
    assert.doesNotMatch(script, /--requirepass/, 'never on the command line')
    const r = spawnSync('sh', ['-c', script], { env: { PATH: process.env.PATH, STORE_PASSWORD: placeholder }, encoding: 'utf8' })
    assert.equal(r.status, 1, 'the placeholder stops Valkey')
    assert.match(r.stderr, /placeholder password/)
    const empty = spawnSync('sh', ['-c', script], { env: { PATH: process.env.PATH, STORE_PASSWORD: '' }, encoding: 'utf8' })
    assert.equal(empty.status, 1, 'an empty password stops Valkey')
  })

  it('only gatehouse pods reach Valkey', () => {
    const np = m.objects.find((o) => o.kind === 'NetworkPolicy' && selects(o.spec?.podSelector?.matchLabels, find(m, 'StatefulSet', 'valkey').spec?.template?.metadata?.labels))
    assert.ok(np, 'a NetworkPolicy for Valkey')
    const rules = np.spec?.ingress ?? []
    assert.ok(rules.length > 0)
    for (const rule of rules) {
      assert.ok((rule.from ?? []).length > 0 && (rule.from ?? []).every((f) => gatehousePodLabels(m).some((l) => selects(f.podSelector?.matchLabels, l))), 'from gatehouse pods only')
      assert.deepEqual(rule.ports?.map((p) => p.port), [6379])
    }
  })

  it('the ServiceMonitor scrapes /metrics on the admin port (14000) of the gatehouse Service', () => {
    const sm = find(m, 'ServiceMonitor', 'gatehouse')
    const svc = m.objects.find((o) => o.kind === 'Service' && selects(sm.spec?.selector?.matchLabels, o.metadata && (o as { metadata: { labels?: Record<string, string> } }).metadata.labels))
    assert.ok(svc, 'the ServiceMonitor selects a Service')
    const ep = sm.spec?.endpoints?.[0]
    assert.equal(ep?.path, '/metrics')
    assert.equal(ep?.scheme, 'https')
    assert.equal(svc.spec?.ports?.find((p) => p.name === ep?.port)?.port, ADMIN_PORT)
  })

  it('every key of the ConfigMap’s proxy.yaml is a configuration key', () => {
    const config = mountedConfig(m, entry.pod, entry.c)
    const bad: string[] = []
    const walk = (o: unknown, prefix: string): void => {
      if (o !== null && typeof o === 'object' && !Array.isArray(o) && leafAt(prefix) === undefined) {
        for (const [k, v] of Object.entries(o)) walk(v, prefix === '' ? k : `${prefix}.${k}`)
      } else if (leafAt(prefix) === undefined) bad.push(prefix)
    }
    walk(config, '')
    assert.deepEqual(bad, [])
  })
})

interface Instruction {
  cmd: string
  args: string
}

/** Dockerfile instructions with line continuations joined and comments dropped. */
function dockerfileInstructions(text: string): Instruction[] {
  const logical: string[] = []
  let current = ''
  for (const raw of text.split('\n')) {
    const line = raw.trim()
    if (line.startsWith('#') || (line === '' && current === '')) continue
    if (line.endsWith('\\')) {
      current += line.slice(0, -1) + ' '
      continue
    }
    logical.push(current + line)
    current = ''
  }
  if (current !== '') logical.push(current)
  return logical
    .filter((l) => l.trim() !== '')
    .map((l) => {
      const match = /^(\S+)\s*(.*)$/.exec(l.trim())
      assert.ok(match)
      return { cmd: (match[1] ?? '').toUpperCase(), args: (match[2] ?? '').trim() }
    })
}

describe('deploy: Dockerfile', () => {
  const all = dockerfileInstructions(readFileSync(ROOT + 'Dockerfile', 'utf8'))
  const lastFrom = all.map((i) => i.cmd).lastIndexOf('FROM')
  const runtime = all.slice(lastFrom)
  const build = all.slice(0, lastFrom)
  const args = (cmd: string, stage: Instruction[] = runtime): string[] => stage.filter((i) => i.cmd === cmd).map((i) => i.args)

  it('every stage is based on Node 24', () => {
    const froms = args('FROM', all)
    assert.ok(froms.length >= 2, 'expected a multi-stage build')
    for (const from of froms) assert.match(from, /^node:24(-[\w.-]+)?(\s+AS\s+\w+)?$/i)
  })

  it('the runtime stage runs as a numeric non-root USER', () => {
    const users = args('USER')
    const user = users[users.length - 1]
    assert.ok(user, 'no USER in the runtime stage')
    const match = /^(\d+)(?::(\d+))?$/.exec(user)
    assert.ok(match, `USER ${user} must be numeric uid[:gid] so that runAsNonRoot can verify it`)
    assert.notEqual(Number(match[1]), 0, 'USER must not be root')
    assert.notEqual(Number(match[2] ?? 1), 0, 'group must not be root')
  })

  it('exposes 8443 and 14000 and starts gatehouse serve', () => {
    const exposed = args('EXPOSE').flatMap((a) => a.split(/\s+/))
    assert.deepEqual(exposed, [String(DATA_PORT), String(ADMIN_PORT)])
    assert.deepEqual(JSON.parse(args('ENTRYPOINT')[0] ?? 'null'), ['node', 'dist/bin/gatehouse.js'])
    assert.deepEqual(JSON.parse(args('CMD')[0] ?? 'null'), ['serve'])
  })

  it('the state directory is a volume, and the variables point gatehouse at it', () => {
    const env = args('ENV').join(' ')
    assert.match(env, new RegExp(`GATEHOUSE_STATE_DIR=${STATE_DIR}(\\s|$)`))
    assert.match(env, /GATEHOUSE_LISTEN_ADDRESS=0\.0\.0\.0/)
    assert.match(env, /GATEHOUSE_ADMIN_ADDRESS=0\.0\.0\.0/)
    assert.match(env, /NODE_ENV=production/)
    assert.ok(args('VOLUME').some((v) => v.includes(STATE_DIR)), 'VOLUME for the state directory')
  })

  it('builds with npm ci and ships only production files', () => {
    const runs = args('RUN', build).join(' ')
    assert.match(runs, /npm ci/)
    assert.match(runs, /npm prune --omit=dev/)
    const copied = args('COPY').join('\n')
    assert.doesNotMatch(copied, /(^|\s)\.?\/?src\b/m, 'the runtime stage must not copy sources')
    for (const needed of ['dist', 'node_modules', 'package.json', 'proxy.yaml']) {
      assert.ok(copied.includes(needed), `runtime stage does not copy ${needed}`)
    }
  })

  it('.dockerignore keeps local builds and state out of the context', () => {
    const ignored = readFileSync(ROOT + '.dockerignore', 'utf8')
      .split('\n')
      .map((l) => l.trim())
      .filter((l) => l !== '' && !l.startsWith('#'))
    for (const entry of ['node_modules', 'dist', '.git', '.gatehouse']) assert.ok(ignored.includes(entry), `.dockerignore lacks ${entry}`)
    for (const needed of ['src', 'proxy.yaml', 'package.json', 'package-lock.json']) {
      assert.ok(!ignored.includes(needed), `.dockerignore excludes ${needed}, which the build needs`)
    }
  })
})
