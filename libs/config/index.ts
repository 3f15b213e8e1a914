import fs from 'node:fs';
import path from 'node:path';

/**
 * Every setting Conveyor reads from the environment, with its default. The README's configuration
 * table is checked against this list by a test, so the two cannot drift apart.
 */
export const SETTINGS = {
  DATABASE_URL: {
    default: 'postgres://postgres@127.0.0.1:5432/conveyor',
    help: 'Postgres connection URL (postgres:// or postgresql://). The database is created by `stack up` / `migrate` if missing.',
  },
  KAFKA_BROKERS: {
    default: '127.0.0.1:9092',
    help: 'Comma-separated Kafka bootstrap brokers, each host:port.',
  },
  SCHEMA_REGISTRY_URL: {
    default: 'http://127.0.0.1:8081/apis/ccompat/v7',
    help: "Base http:// or https:// URL of a registry speaking Confluent Schema Registry's REST API; credentials in it (https://user:password@host/...) are sent as HTTP Basic authentication.",
  },
  CONVEYOR_HOME: {
    default: '.conveyor',
    help: 'Folder for the local stack (data, logs, pids) and default output; relative to the working directory.',
  },
  KAFKA_PORT: {
    default: '9092',
    help: 'Port of the local Kafka broker started by `stack up` (the controller listens on the next port).',
  },
  SCHEMA_REGISTRY_PORT: {
    default: '8081',
    help: 'Port of the local schema registry started by `stack up` (its management port is this + 1000).',
  },
  RELAY_PORT: {
    default: '9464',
    help: "Port of the relay's /metrics and /healthz (0 picks a free port).",
  },
  RELAY_BATCH_SIZE: {
    default: '2000',
    help: 'Most outbox rows the relay publishes in one Kafka transaction (sent in produce requests of at most 768 KiB).',
  },
  RELAY_AUTO_REGISTER: {
    default: 'false',
    help: 'true lets the relay register a new compatible schema version itself; false (production) requires `conveyor schema register`.',
  },
  RELAY_TOPIC_PARTITIONS: {
    default: '6',
    help: 'Partitions of the event topics the relay creates.',
  },
  RELAY_RETENTION_HOURS: {
    default: '24',
    help: 'Published outbox rows older than this are deleted (in batches); 0 keeps them.',
  },
  RELAY_LEASE_TTL_MS: {
    default: '15000',
    help: "How long a relay's shard lease lasts without renewal; a dead relay's shards move after this.",
  },
  OPS_HOST: {
    default: '127.0.0.1',
    help: "Address the relay's, sink's and pull scheduler's /metrics, /healthz and /readyz listen on; 0.0.0.0 in a container, so probes and Prometheus can reach them (the image sets it).",
  },
  LOG_LEVEL: {
    default: 'info',
    help: 'pino log level: trace, debug, info, warn, error, fatal or silent.',
  },
  CONVEYOR_SOURCES_DIR: {
    default: 'sources',
    help: 'Folder of pull source definitions (*.yaml, *.yml, *.json), loaded after the built-ins; relative to the working directory.',
  },
  PULL_SOURCES: {
    default: '',
    help: 'Comma-separated sources `pull --all` runs; empty runs every defined source, the built-ins included (which call GitHub and the bundled simulator). Set it in production.',
  },
  PULL_PORT: {
    default: '9466',
    help: "Port of the pull scheduler's (`pull --all`) /metrics and /healthz (0 picks a free port; the port bound is printed on stderr).",
  },
  PULL_LEASE_SECONDS: {
    default: '30',
    help: 'Lifetime in seconds (at least 1) of the lease that keeps one source from running twice at once; renewed every third of it while a run is alive.',
  },
  SINK_OUTPUT_DIR: {
    default: '',
    help: 'Root folder of the lake (bronze/ and silver/) the sink writes and `verify` reads; empty means <CONVEYOR_HOME>/lake.',
  },
  SINK_GROUP_ID: {
    default: 'conveyor-sink',
    help: 'Kafka consumer group of the sink; sinks in one group share the partitions.',
  },
  SINK_TOPICS: {
    default: '',
    help: 'Comma-separated topics the sink consumes; empty means every conveyor.<source> topic, including those created later (looked for every 10 s).',
  },
  SINK_PORT: {
    default: '9465',
    help: "Port of the sink's /metrics and /healthz (0 picks a free port).",
  },
  SINK_ENTITY_SOURCES: {
    default: '',
    help: 'Comma-separated sources whose events also merge into silver/<source>_latest (latest updated_at per entity key wins).',
  },
  SINK_FILE_MAX_RECORDS: {
    default: '100000',
    help: 'A bronze file holds at most this many records; the next record starts a new file.',
  },
  SINK_FILE_MAX_BYTES: {
    default: '67108864',
    help: 'A bronze file holds at most this many bytes (a single larger record gets a file of its own).',
  },
  SINK_FILE_MAX_SPAN_MS: {
    default: '3600000',
    help: "A bronze file ends before a record ingested this long after the file's first record (record time, not the clock); files never span two ingest hours, so only values under 3600000 change anything.",
  },
  SINK_FETCH_MAX_BYTES: {
    default: '4194304',
    help: 'Bytes the sink fetches per partition and batch; a batch is written and committed as a unit.',
  },
  SINK_CONSUMERS: {
    default: '3',
    help: 'Consumer-group members in one sink process; each fetches on its own, so one fetches while another writes.',
  },
  SINK_PARTITIONS_CONCURRENTLY: {
    default: '1',
    help: "Partitions each of the sink's consumers processes at the same time; its fetch holds this many partitions' worth (SINK_FETCH_MAX_BYTES each).",
  },
  SINK_DEDUPE_RETENTION_DAYS: {
    default: '7',
    help: 'Dedupe claims older than this are deleted; a duplicate arriving later than this is not caught (0 keeps claims forever).',
  },
  SINK_DUCKDB_MEMORY: {
    default: '128MB',
    help: "Memory limit of the sink's in-process DuckDB, which merges entity datasets (loaded at the first merge): a number and a unit (B, KB, MB, GB, TB, KiB, MiB, GiB, TiB).",
  },
  SINK_SESSION_TIMEOUT_MS: {
    default: '30000',
    help: 'Kafka consumer session timeout of the sink: a sink silent this long (crashed) loses its partitions to the others.',
  },
  WEBHOOK_PORT: {
    default: '8080',
    help: 'Port of the webhook / ingest service (`conveyor webhook`); 0 picks a free port.',
  },
  WEBHOOK_HOST: {
    default: '127.0.0.1',
    help: 'Address the webhook service listens on; 0.0.0.0 to accept requests from other machines.',
  },
  WEBHOOK_SOURCES_FILE: {
    default: '',
    help: 'YAML or JSON file of webhook sources (scheme, names of the secret variables); empty enables github / stripe / standard-webhooks when GITHUB_WEBHOOK_SECRET / STRIPE_WEBHOOK_SECRET / STANDARD_WEBHOOK_SECRET is set.',
  },
  WEBHOOK_BODY_LIMIT: {
    default: '1048576',
    help: 'Largest request body in bytes for /webhooks/:source and /ingest; larger ones get 413.',
  },
  WEBHOOK_MAX_JSON_DEPTH: {
    default: '64',
    help: 'Deepest JSON nesting accepted in a body; deeper ones get 400.',
  },
  INGEST_BATCH_MAX_EVENTS: {
    default: '1000',
    help: 'Most events one POST /ingest/batch may carry (its body limit is WEBHOOK_BODY_LIMIT times 16).',
  },
  INGEST_MAX_FUTURE_SECONDS: {
    default: '86400',
    help: 'An event_time further than this in the future is refused (400); times before 1970 always are.',
  },
  WEBHOOK_DB_POOL_MAX: {
    default: '10',
    help: 'Postgres connections of the webhook service.',
  },
  WEBHOOK_DB_MAX_WAITING: {
    default: '256',
    help: 'Requests that may wait for a Postgres connection; beyond this (or after 2 s of waiting) the service answers 503 with Retry-After.',
  },
  DRY_RUN: {
    default: 'false',
    help: 'true makes the webhook service validate and compute event ids without writing (per request: header x-conveyor-dry-run: true).',
  },
} as const satisfies Record<string, { default: string; help: string }>;

export type SettingName = keyof typeof SETTINGS;

export class ConfigError extends Error {
  constructor(setting: string, problem: string) {
    super(`${setting}: ${problem}`);
    this.name = 'ConfigError';
  }
}

/** pino's levels, lowest first ('silent' logs nothing). */
export const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const;

/** The URL in `value` if it parses with one of `protocols`, else undefined. */
function parsedUrl(value: string, protocols: string[]): URL | undefined {
  try {
    const url = new URL(value);
    return protocols.includes(url.protocol) ? url : undefined;
  } catch {
    return undefined;
  }
}

/** A problem with one broker of a KAFKA_BROKERS list ("host:port"), or undefined. */
function brokerProblem(broker: string): string | undefined {
  const colon = broker.lastIndexOf(':');
  const host = colon > 0 ? broker.slice(0, colon) : '';
  const port = colon > 0 ? broker.slice(colon + 1) : '';
  if (!host || /\s/.test(host) || !/^\d+$/.test(port) || Number(port) < 1 || Number(port) > 65535) {
    return `expected comma-separated host:port pairs with ports 1-65535 (e.g. 127.0.0.1:9092), got "${broker}"`;
  }
  return undefined;
}

/** A memory size DuckDB takes as a memory_limit: a positive number and a unit, e.g. 512MB, 2GB, 1.5GiB. */
export function isMemorySize(value: string): boolean {
  const match = /^(\d+(?:\.\d*)?|\.\d+)\s*(?:B|KB|MB|GB|TB|KiB|MiB|GiB|TiB)$/i.exec(value.trim());
  return match !== null && Number(match[1]) > 0;
}

/** What a definition may name as the environment variable holding a secret or a value. */
export const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

export const MEMORY_SIZE_FORM = 'a size such as 512MB, 2GB or 1.5GiB (units B, KB, MB, GB, TB, KiB, MiB, GiB, TiB)';

/**
 * Checks of settings whose value has a form, run by setting() on every read: a wrong value fails
 * naming the variable, not deep inside the library it reaches. URLs are not echoed: they may hold a
 * password.
 */
const CHECKS: Partial<Record<SettingName, (value: string) => string | undefined>> = {
  DATABASE_URL: (value) =>
    parsedUrl(value, ['postgres:', 'postgresql:'])
      ? undefined
      : 'expected a URL like postgres://user:password@host:5432/database (not shown: it may hold a password)',
  SCHEMA_REGISTRY_URL: (value) =>
    parsedUrl(value, ['http:', 'https:'])
      ? undefined
      : 'expected an http:// or https:// URL like http://127.0.0.1:8081/apis/ccompat/v7 (not shown: it may hold a password)',
  KAFKA_BROKERS: (value) => {
    const brokers = value
      .split(',')
      .map((b) => b.trim())
      .filter(Boolean);
    if (brokers.length === 0) return 'no broker given';
    for (const broker of brokers) {
      const problem = brokerProblem(broker);
      if (problem) return problem;
    }
    return undefined;
  },
  SINK_DUCKDB_MEMORY: (value) => (isMemorySize(value) ? undefined : `expected ${MEMORY_SIZE_FORM}, got "${value}"`),
  LOG_LEVEL: (value) =>
    (LOG_LEVELS as readonly string[]).includes(value)
      ? undefined
      : `expected one of ${LOG_LEVELS.join(', ')}, got "${value}"`,
};

/**
 * The value of a setting, without surrounding whitespace; its default when unset, empty or only
 * whitespace. Throws ConfigError, naming the setting, when the value has the wrong form.
 */
export function setting(name: SettingName, env: NodeJS.ProcessEnv = process.env): string {
  const value = env[name]?.trim();
  const chosen = value === undefined || value === '' ? SETTINGS[name].default : value;
  const problem = CHECKS[name]?.(chosen);
  if (problem) throw new ConfigError(name, problem);
  return chosen;
}

/** A comma-separated list setting: items trimmed, empty ones dropped (empty: no items). */
export function listSetting(name: SettingName, env: NodeJS.ProcessEnv = process.env): string[] {
  return setting(name, env)
    .split(',')
    .map((item) => item.trim())
    .filter(Boolean);
}

/** A whole number written in decimal digits only: "0x10", "1e3", "1.0", "-1" and "" are refused. */
function wholeNumber(raw: string): number | undefined {
  if (!/^\d+$/.test(raw)) return undefined;
  const value = Number(raw);
  return Number.isSafeInteger(value) ? value : undefined;
}

/** A TCP port; `anyFree` allows 0 (the OS picks a free port), for servers whose port is only reported. */
export function portSetting(
  name: SettingName,
  env: NodeJS.ProcessEnv = process.env,
  options: { anyFree?: boolean } = {},
): number {
  const raw = setting(name, env);
  const port = wholeNumber(raw);
  const min = options.anyFree ? 0 : 1;
  if (port === undefined || port < min || port > 65535) {
    throw new ConfigError(name, `expected a TCP port (${min}-65535), got "${raw}"`);
  }
  return port;
}

export function intSetting(name: SettingName, env: NodeJS.ProcessEnv = process.env, min = 0): number {
  const raw = setting(name, env);
  const value = wholeNumber(raw);
  if (value === undefined || value < min)
    throw new ConfigError(name, `expected a whole number >= ${min} (decimal digits only), got "${raw}"`);
  return value;
}

export function boolSetting(name: SettingName, env: NodeJS.ProcessEnv = process.env): boolean {
  const raw = setting(name, env).toLowerCase();
  if (['true', '1', 'yes'].includes(raw)) return true;
  if (['false', '0', 'no'].includes(raw)) return false;
  throw new ConfigError(name, `expected true or false, got "${raw}"`);
}

let root: string | undefined;

/**
 * A path inside the Conveyor checkout (schemas, migrations, built-in sources, infra). Found by walking
 * up to Conveyor's package.json, so it is the same from the TypeScript sources and from the CLI's
 * bundle in .build/.
 */
export function projectPath(...parts: string[]): string {
  if (root === undefined) {
    let dir = import.meta.dirname;
    for (;;) {
      const manifest = path.join(dir, 'package.json');
      if (fs.existsSync(manifest) && JSON.parse(fs.readFileSync(manifest, 'utf8')).name === 'conveyor') break;
      const parent = path.dirname(dir);
      if (parent === dir) throw new Error(`no Conveyor package.json above ${import.meta.dirname}`);
      dir = parent;
    }
    root = dir;
  }
  return path.join(root, ...parts);
}

export function conveyorHome(env: NodeJS.ProcessEnv = process.env): string {
  return path.resolve(setting('CONVEYOR_HOME', env));
}

export function kafkaBrokers(env: NodeJS.ProcessEnv = process.env): string[] {
  const brokers = setting('KAFKA_BROKERS', env)
    .split(',')
    .map((b) => b.trim())
    .filter(Boolean);
  if (brokers.length === 0) throw new ConfigError('KAFKA_BROKERS', 'no broker given');
  return brokers;
}

/**
 * Query parameters that carry a secret: pg takes `?password=` as the password, `sslpassword` unlocks
 * the client key, and `sslkey` names (or, for some clients, holds) that key.
 */
const SECRET_PARAMS = new Set(['password', 'sslpassword', 'sslkey']);

/** The connection string with its password masked, in the userinfo and in the query; safe to print. */
export function redactUrl(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password) parsed.password = '***';
    const secret = [...parsed.searchParams.keys()].filter((key) => SECRET_PARAMS.has(key.toLowerCase()));
    for (const key of new Set(secret)) parsed.searchParams.set(key, '***');
    return parsed.toString();
  } catch {
    return '<unparseable url>';
  }
}

/** The README's configuration table rows, one per setting (kept in sync by `npm run docs:settings`). */
export function settingsTableRows(): string[] {
  return Object.entries(SETTINGS).map(
    ([name, s]) =>
      `| \`${name}\` | ${s.default === '' ? '(empty)' : `\`${s.default}\``} | ${s.help.replaceAll('|', '\\|')} |`,
  );
}
