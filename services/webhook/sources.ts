import fs from 'node:fs';
import { Webhook } from 'standardwebhooks';
import YAML from 'yaml';
import { ConfigError, ENV_NAME } from '../../libs/config/index.ts';
import { type HmacOptions, SCHEMES, type Scheme } from './verify.ts';

/**
 * Webhook sources: a JSON or YAML file (WEBHOOK_SOURCES_FILE) of
 *   sources: { <name>: { scheme, secret_env: [ENV_VAR, ...], ...scheme options } }
 * Secrets are read from the named environment variables, so the file itself holds no secret.
 * Without a file, github / stripe / standard-webhooks are enabled when their default variables are set.
 */

export interface WebhookSource {
  name: string;
  scheme: Scheme;
  /** Active secrets, newest first; any one verifies. Never logged. */
  secrets: string[];
  /** Names of the variables the secrets came from (safe to log). */
  secretEnv: string[];
  hmac?: HmacOptions;
  /** hmac scheme: header carrying the delivery id; without it the id is the body's sha256. */
  idHeader?: string;
  /** hmac scheme: header carrying the event type; without it the body's "type" field. */
  typeHeader?: string;
  /** Dot path into the body giving the entity key (Kafka key); each scheme has a default. */
  entityKeyPath?: string;
}

const NAME = /^[A-Za-z0-9._-]{1,200}$/;
const HEADER = /^[A-Za-z0-9-]{1,100}$/;
const FIELDS = ['scheme', 'secret_env', 'entity_key_path'];
const HMAC_FIELDS = ['header', 'encoding', 'prefix', 'id_header', 'type_header'];

export const DEFAULT_SOURCES: Record<string, { scheme: Scheme; secret_env: string[] }> = {
  github: { scheme: 'github', secret_env: ['GITHUB_WEBHOOK_SECRET', 'GITHUB_WEBHOOK_SECRET_PREVIOUS'] },
  stripe: { scheme: 'stripe', secret_env: ['STRIPE_WEBHOOK_SECRET', 'STRIPE_WEBHOOK_SECRET_PREVIOUS'] },
  'standard-webhooks': {
    scheme: 'standard-webhooks',
    secret_env: ['STANDARD_WEBHOOK_SECRET', 'STANDARD_WEBHOOK_SECRET_PREVIOUS'],
  },
};

function optionalString(where: string, value: unknown, pattern?: RegExp): string | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'string' || (pattern && !pattern.test(value))) {
    throw new ConfigError('WEBHOOK_SOURCES_FILE', `${where} is not valid: ${JSON.stringify(value)}`);
  }
  return value;
}

function parseSource(name: string, raw: unknown, env: NodeJS.ProcessEnv, required: boolean): WebhookSource | undefined {
  const fail = (problem: string): never => {
    throw new ConfigError('WEBHOOK_SOURCES_FILE', `source "${name}": ${problem}`);
  };
  if (!NAME.test(name)) fail('name may contain only letters, digits, ".", "_" and "-"');
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) fail('must be an object');
  const def = raw as Record<string, unknown>;
  const scheme = def.scheme as Scheme;
  if (!SCHEMES.includes(scheme)) fail(`scheme must be one of ${SCHEMES.join(', ')}`);
  // A misspelt field would otherwise be ignored silently (an entity key from the default path, say).
  const known = scheme === 'hmac' ? [...FIELDS, ...HMAC_FIELDS] : FIELDS;
  for (const field of Object.keys(def)) {
    if (known.includes(field)) continue;
    fail(
      HMAC_FIELDS.includes(field)
        ? `"${field}" applies to the hmac scheme only`
        : `unknown field "${field}" (known: ${known.join(', ')})`,
    );
  }
  const names = typeof def.secret_env === 'string' ? [def.secret_env] : def.secret_env;
  if (!Array.isArray(names) || names.length === 0 || !names.every((n) => typeof n === 'string' && n !== '')) {
    fail('secret_env must name one or more environment variables');
  }
  // Not echoed: a value that is not a variable name may be the secret itself, pasted in by mistake.
  (names as string[]).forEach((n, i) => {
    if (!ENV_NAME.test(n)) fail(`secret_env entry ${i + 1} is not an environment variable name (letters, digits, _)`);
  });
  const secretEnv = (names as string[]).filter((n) => env[n] !== undefined && env[n] !== '');
  if (secretEnv.length === 0) {
    if (!required) return undefined;
    fail(`none of its secret variables is set (${(names as string[]).join(', ')})`);
  }
  const secrets = secretEnv.map((n) => env[n]!);
  if (scheme === 'standard-webhooks') {
    secretEnv.forEach((n, i) => {
      try {
        new Webhook(secrets[i]!);
      } catch {
        fail(`${n} is not a base64 secret (whsec_...)`);
      }
    });
  }
  const source: WebhookSource = { name, scheme, secrets, secretEnv };
  source.entityKeyPath = optionalString(`source "${name}".entity_key_path`, def.entity_key_path);
  if (scheme === 'hmac') {
    const header = optionalString(`source "${name}".header`, def.header, HEADER);
    if (!header) fail('the hmac scheme needs "header" (the header carrying the signature)');
    const encoding = def.encoding ?? 'hex';
    if (encoding !== 'hex' && encoding !== 'base64') fail('encoding must be hex or base64');
    source.hmac = {
      header: header!.toLowerCase(),
      encoding: encoding as 'hex' | 'base64',
      prefix: optionalString(`source "${name}".prefix`, def.prefix) ?? '',
    };
    source.idHeader = optionalString(`source "${name}".id_header`, def.id_header, HEADER)?.toLowerCase();
    source.typeHeader = optionalString(`source "${name}".type_header`, def.type_header, HEADER)?.toLowerCase();
  }
  return source;
}

/** Reads the sources; throws ConfigError naming the file, source and field at fault. */
export function loadSources(file: string, env: NodeJS.ProcessEnv = process.env): Map<string, WebhookSource> {
  const sources = new Map<string, WebhookSource>();
  if (!file) {
    for (const [name, def] of Object.entries(DEFAULT_SOURCES)) {
      const source = parseSource(name, def, env, false);
      if (source) sources.set(name, source);
    }
    return sources;
  }
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (error) {
    throw new ConfigError('WEBHOOK_SOURCES_FILE', `cannot read ${file}: ${(error as Error).message}`);
  }
  let doc: unknown;
  try {
    doc = YAML.parse(text); // YAML is a superset of JSON: one parser for both.
  } catch (error) {
    throw new ConfigError('WEBHOOK_SOURCES_FILE', `${file} is not valid YAML or JSON: ${(error as Error).message}`);
  }
  const defs = (doc as { sources?: unknown } | null)?.sources;
  if (defs === null || typeof defs !== 'object' || Array.isArray(defs)) {
    throw new ConfigError('WEBHOOK_SOURCES_FILE', `${file} needs a "sources" object keyed by source name`);
  }
  const extra = Object.keys(doc as object).filter((key) => key !== 'sources');
  if (extra.length > 0) {
    throw new ConfigError(
      'WEBHOOK_SOURCES_FILE',
      `${file}: unknown top-level field(s) ${extra.join(', ')} (only "sources")`,
    );
  }
  for (const [name, def] of Object.entries(defs as Record<string, unknown>)) {
    sources.set(name, parseSource(name, def, env, true)!);
  }
  return sources;
}
