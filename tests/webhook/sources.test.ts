import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadSources } from '../../services/webhook/sources.ts';

function file(text: string): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'webhook-sources-'));
  const name = path.join(dir, 'sources.yaml');
  fs.writeFileSync(name, text);
  return name;
}

describe('webhook sources (pure logic)', () => {
  it('without a file, enables the built-in sources whose secret variable is set', () => {
    const sources = loadSources('', { GITHUB_WEBHOOK_SECRET: 'a', GITHUB_WEBHOOK_SECRET_PREVIOUS: 'b' });
    expect([...sources.keys()]).toEqual(['github']);
    expect(sources.get('github')).toMatchObject({ scheme: 'github', secrets: ['a', 'b'] });
  });

  it('reads YAML and JSON, with secrets taken from the named variables', () => {
    const yaml = file('sources:\n  acme: { scheme: hmac, secret_env: K, header: X-Sig, encoding: base64 }\n');
    expect(loadSources(yaml, { K: 'k' }).get('acme')).toMatchObject({
      secrets: ['k'],
      hmac: { header: 'x-sig', encoding: 'base64', prefix: '' },
    });
    const json = file(JSON.stringify({ sources: { s: { scheme: 'stripe', secret_env: ['A', 'B'] } } }));
    expect(loadSources(json, { B: 'b' }).get('s')?.secrets).toEqual(['b']);
  });

  it('names the file, source and field at fault', () => {
    const env = { K: 'k' };
    expect(() => loadSources('/no/such/file.yaml', env)).toThrow(/cannot read \/no\/such\/file.yaml/);
    expect(() => loadSources(file('sources: [1'), env)).toThrow(/not valid YAML or JSON/);
    expect(() => loadSources(file('other: {}'), env)).toThrow(/needs a "sources" object/);
    expect(() => loadSources(file('sources: {}\nsorces: { x: 1 }'), env)).toThrow(
      /unknown top-level field\(s\) sorces/,
    );
    expect(() => loadSources(file('sources:\n  x: { scheme: md5, secret_env: K }'), env)).toThrow(
      /source "x": scheme must be one of github, stripe, standard-webhooks, hmac/,
    );
    expect(() => loadSources(file('sources:\n  x: { scheme: hmac, secret_env: K }'), env)).toThrow(
      /source "x": the hmac scheme needs "header"/,
    );
    expect(() => loadSources(file('sources:\n  x: { scheme: standard-webhooks, secret_env: K }'), env)).toThrow(
      /source "x": K is not a base64 secret/,
    );
    expect(() => loadSources(file('sources:\n  "a b": { scheme: github, secret_env: K }'), env)).toThrow(
      /source "a b": name may contain only/,
    );
    expect(() => loadSources(file('sources:\n  x: { scheme: github, secret_env: K, entity_key_pth: a }'), env)).toThrow(
      /source "x": unknown field "entity_key_pth" \(known: scheme, secret_env, entity_key_path\)/,
    );
    expect(() => loadSources(file('sources:\n  x: { scheme: stripe, secret_env: K, header: X-Sig }'), env)).toThrow(
      /source "x": "header" applies to the hmac scheme only/,
    );
    const pasted = () => loadSources(file('sources:\n  x: { scheme: github, secret_env: [K, "s3cr3t-value!"] }'), env);
    expect(pasted).toThrow(/source "x": secret_env entry 2 is not an environment variable name/);
    expect(pasted).not.toThrow(/s3cr3t/);
  });
});
