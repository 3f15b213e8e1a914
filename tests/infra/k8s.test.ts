import fs from 'node:fs';
import path from 'node:path';
import { Deployment } from 'kubernetes-models/apps/v1/Deployment';
import { PodDisruptionBudget } from 'kubernetes-models/policy/v1/PodDisruptionBudget';
import { ConfigMap } from 'kubernetes-models/v1/ConfigMap';
import { PersistentVolumeClaim } from 'kubernetes-models/v1/PersistentVolumeClaim';
import { Service } from 'kubernetes-models/v1/Service';
import { describe, expect, it } from 'vitest';
import { parseAllDocuments, parse as parseYaml } from 'yaml';
import { SETTINGS } from '../../libs/config/index.ts';

const dir = path.resolve(import.meta.dirname, '../../infra/k8s');
const kustomization = parseYaml(fs.readFileSync(path.join(dir, 'kustomization.yaml'), 'utf8')) as {
  resources: string[];
  images: Array<{ name: string }>;
};
const documents = kustomization.resources.flatMap((file) =>
  parseAllDocuments(fs.readFileSync(path.join(dir, file), 'utf8')).map((d) => ({ file, object: d.toJS() })),
);
const MODELS: Record<string, new (data: never) => { validate(): void }> = {
  'apps/v1/Deployment': Deployment,
  'v1/Service': Service,
  'v1/ConfigMap': ConfigMap,
  'v1/PersistentVolumeClaim': PersistentVolumeClaim,
  'policy/v1/PodDisruptionBudget': PodDisruptionBudget,
};
const PROVIDER_SECRETS = ['GITHUB_WEBHOOK_SECRET', 'STRIPE_WEBHOOK_SECRET', 'STANDARD_WEBHOOK_SECRET'];
const deployments = documents.filter((d) => d.object.kind === 'Deployment').map((d) => d.object);
const named = (kind: string, name: string) =>
  documents.find((d) => d.object.kind === kind && d.object.metadata.name === name)?.object;

interface Container {
  name: string;
  image: string;
  command?: string[];
  args: string[];
  env?: Array<{ name: string; value: string }>;
  ports?: Array<{ name: string; containerPort: number }>;
  readinessProbe?: { httpGet: { path: string; port: string } };
  livenessProbe?: { httpGet: { path: string; port: string } };
  resources: { limits: { memory: string } };
}
const containers = (d: { spec: { template: { spec: { containers: Container[]; initContainers?: Container[] } } } }) => [
  ...(d.spec.template.spec.initContainers ?? []),
  ...d.spec.template.spec.containers,
];

describe('infra/k8s manifests', () => {
  it('lists every manifest in the kustomization, and each is a valid Kubernetes object', () => {
    const files = fs.readdirSync(dir).filter((f) => f.endsWith('.yaml') && f !== 'kustomization.yaml');
    expect([...kustomization.resources].sort()).toEqual(files.sort());
    for (const { file, object } of documents) {
      const Model = MODELS[`${object.apiVersion}/${object.kind}`];
      expect(Model, `${file}: ${object.apiVersion} ${object.kind} has no model here`).toBeDefined();
      expect(
        () => new Model!(object as never).validate(),
        `${file}: ${object.kind} ${object.metadata?.name}`,
      ).not.toThrow();
    }
  });

  it('runs webhook, relay, sink and the pull scheduler from the image, through its launcher, after migrate', () => {
    const commands = deployments.map((d) => containers(d).map((c) => c.args.join(' ')));
    expect(commands.sort()).toEqual(
      [
        ['migrate', 'pull --all --quiet'],
        ['migrate', 'relay'],
        ['migrate', 'sink'],
        ['migrate', 'webhook'],
      ].sort(),
    );
    for (const d of deployments) {
      expect(d.spec.selector.matchLabels).toEqual(d.spec.template.metadata.labels);
      for (const c of containers(d)) {
        expect(c.image).toBe(kustomization.images[0]!.name);
        // `command` would bypass the launcher that gives node the sink's memory flags.
        expect(c.command).toBeUndefined();
      }
    }
  });

  it('configures the processes only with settings Conveyor knows; secrets stay out of the ConfigMap', () => {
    const config = named('ConfigMap', 'conveyor-config')!;
    for (const key of Object.keys(config.data)) expect(key in SETTINGS, key).toBe(true);
    expect(Object.keys(config.data)).not.toContain('DATABASE_URL');
    for (const d of deployments) {
      for (const c of containers(d)) {
        for (const { name } of c.env ?? []) {
          expect(name in SETTINGS || PROVIDER_SECRETS.includes(name), `${c.name}: ${name}`).toBe(true);
        }
      }
    }
  });

  it.each([
    ['webhook', 'WEBHOOK_PORT'],
    ['relay', 'RELAY_PORT'],
    ['sink', 'SINK_PORT'],
    ['pull', 'PULL_PORT'],
  ] as const)('probes %s on its port, and its Service points there', (component, portSetting) => {
    const d = deployments.find((x) => x.spec.template.metadata.labels['app.kubernetes.io/component'] === component)!;
    const main = d.spec.template.spec.containers[0] as Container;
    const port = Number(main.env?.find((e) => e.name === portSetting)?.value);
    expect(port).toBe(Number(SETTINGS[portSetting].default));
    const portName = main.ports?.find((p) => p.containerPort === port)?.name;
    expect(portName).toBeDefined();
    expect(main.livenessProbe?.httpGet).toEqual({ path: '/healthz', port: portName });
    if (main.readinessProbe) expect(main.readinessProbe.httpGet).toEqual({ path: '/readyz', port: portName });
    const service = named('Service', `conveyor-${component}`)!;
    expect(service.spec.selector).toEqual(d.spec.template.metadata.labels);
    expect(service.spec.ports[0].targetPort).toBe(portName);
  });

  it('gives the sink the lake volume and room above its measured peak', () => {
    const sink = named('Deployment', 'conveyor-sink')!;
    const claim = sink.spec.template.spec.volumes[0].persistentVolumeClaim.claimName;
    expect(named('PersistentVolumeClaim', claim)).toBeDefined();
    const main = sink.spec.template.spec.containers[0] as Container;
    const outputDir = main.env?.find((e) => e.name === 'SINK_OUTPUT_DIR')?.value;
    expect(sink.spec.template.spec.containers[0].volumeMounts[0].mountPath).toBe(outputDir);
    expect(Number.parseInt(main.resources.limits.memory, 10)).toBeGreaterThanOrEqual(256);
  });

  it('serves the ops endpoints on every interface in the image, so probes from the node reach them', () => {
    const dockerfile = fs.readFileSync(path.resolve(dir, '../../Dockerfile'), 'utf8');
    expect(dockerfile).toMatch(/OPS_HOST=0\.0\.0\.0/);
    const webhook = named('Deployment', 'conveyor-webhook')!.spec.template.spec.containers[0] as Container;
    expect(webhook.env?.find((e) => e.name === 'WEBHOOK_HOST')?.value).toBe('0.0.0.0');
  });
});
