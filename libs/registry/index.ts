import avro from 'avsc';
import { redactUrl, setting } from '../config/index.ts';
import { COMPATIBILITY_LEVELS, type CompatibilityLevel, compatibilityProblems } from './compatibility.ts';

export { COMPATIBILITY_LEVELS, type CompatibilityLevel, compatibilityProblems } from './compatibility.ts';

const CONTENT_TYPE = 'application/vnd.schemaregistry.v1+json';

export class RegistryError extends Error {
  constructor(
    message: string,
    readonly status: number,
    readonly errorCode?: number,
  ) {
    super(message);
    this.name = 'RegistryError';
  }
}

/** A schema the gate refused: incompatible (problems name the fields) or not registered. */
export class SchemaGateError extends Error {
  constructor(
    readonly subject: string,
    readonly reason: 'incompatible' | 'unregistered',
    readonly problems: string[],
  ) {
    super(
      reason === 'incompatible'
        ? `schema for subject ${subject} is incompatible with the registered versions:\n  - ${problems.join('\n  - ')}`
        : `schema for subject ${subject} is not registered (it is compatible); register it with \`conveyor schema register\` or enable auto-registration`,
    );
    this.name = 'SchemaGateError';
  }
}

/** `text` with the userinfo of every URL in it masked. */
function redactText(text: string): string {
  return text.replace(/\b([a-z][a-z0-9+.-]*:\/\/)[^\s/@]*@/gi, '$1***@');
}

/** A percent-encoded URL part decoded, or as it is when it is not valid percent-encoding. */
function decoded(part: string): string {
  try {
    return decodeURIComponent(part);
  } catch {
    return part;
  }
}

/** Subject naming: TopicNameStrategy. */
export function valueSubject(topic: string): string {
  return `${topic}-value`;
}

/**
 * A client for any registry speaking Confluent Schema Registry's REST API (Confluent, Apicurio's
 * ccompat API, Karapace, Redpanda), limited to what Conveyor needs.
 */
export class SchemaRegistryClient {
  /** The base URL without credentials (they go in the Authorization header). */
  readonly url: string;
  private readonly authorization: string | undefined;
  private readonly schemasById = new Map<number, Promise<avro.Type>>();

  /**
   * `url` may carry credentials (http://user:password@host/...): Node's fetch refuses such a URL, so
   * they are taken out of it and sent as HTTP Basic authentication. No error shows them.
   */
  constructor(url: string = setting('SCHEMA_REGISTRY_URL')) {
    let parsed: URL;
    try {
      parsed = new URL(url);
    } catch {
      throw new Error('schema registry: expected an http:// or https:// URL (not shown: it may hold a password)');
    }
    if (parsed.username || parsed.password) {
      const credentials = `${decoded(parsed.username)}:${decoded(parsed.password)}`;
      this.authorization = `Basic ${Buffer.from(credentials).toString('base64')}`;
      parsed.username = '';
      parsed.password = '';
    }
    this.url = parsed.toString().replace(/\/+$/, '');
  }

  private async call<T>(method: string, path: string, body?: unknown): Promise<T> {
    const headers: Record<string, string> = { accept: CONTENT_TYPE, 'content-type': CONTENT_TYPE };
    if (this.authorization) headers.authorization = this.authorization;
    let response: Response;
    let text: string;
    try {
      response = await fetch(`${this.url}${path}`, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        signal: AbortSignal.timeout(10_000),
      });
      text = await response.text();
    } catch (error) {
      // fetch's messages may hold the URL it was given; its cause says why it failed (ECONNREFUSED...).
      const cause = (error as Error).cause as { code?: string; message?: string } | undefined;
      const why = [(error as Error).message, cause?.code ?? cause?.message].filter(Boolean).join(': ');
      throw new RegistryError(`${method} ${redactUrl(`${this.url}${path}`)}: ${redactText(why)}`, 0);
    }
    let parsed: unknown;
    try {
      parsed = text ? (JSON.parse(text) as unknown) : undefined;
    } catch {
      parsed = undefined;
    }
    if (!response.ok) {
      const error = parsed as { error_code?: number; message?: string } | undefined;
      throw new RegistryError(
        `${method} ${path}: ${response.status} ${redactText(error?.message ?? text)}`,
        response.status,
        error?.error_code,
      );
    }
    if (text && parsed === undefined) {
      throw new RegistryError(
        `${method} ${path}: ${response.status} but not JSON: ${redactText(text.slice(0, 200))}`,
        response.status,
      );
    }
    return parsed as T;
  }

  async compatibilityLevel(subject: string): Promise<CompatibilityLevel> {
    const read = (answer: { compatibilityLevel?: string; compatibility?: string }) =>
      (answer.compatibilityLevel ?? answer.compatibility) as CompatibilityLevel;
    try {
      return read(await this.call('GET', `/config/${encodeURIComponent(subject)}?defaultToGlobal=true`));
    } catch (error) {
      if (!(error instanceof RegistryError) || error.status !== 404) throw error;
      return read(await this.call('GET', '/config'));
    }
  }

  async setCompatibility(subject: string, level: CompatibilityLevel): Promise<void> {
    if (!COMPATIBILITY_LEVELS.includes(level)) throw new Error(`unknown compatibility level ${level}`);
    await this.call('PUT', `/config/${encodeURIComponent(subject)}`, { compatibility: level });
  }

  /** Registered schemas of a subject, oldest first; empty when the subject does not exist. */
  async history(subject: string): Promise<unknown[]> {
    let versions: number[];
    try {
      versions = await this.call('GET', `/subjects/${encodeURIComponent(subject)}/versions`);
    } catch (error) {
      if (error instanceof RegistryError && error.status === 404) return [];
      throw error;
    }
    const schemas = await Promise.all(
      versions.map((v) =>
        this.call<{ schema: string }>('GET', `/subjects/${encodeURIComponent(subject)}/versions/${v}`),
      ),
    );
    return schemas.map((s) => JSON.parse(s.schema) as unknown);
  }

  /** The id under which this exact schema is registered in the subject, if it is. */
  async lookup(subject: string, schema: unknown): Promise<number | undefined> {
    try {
      const found = await this.call<{ id: number }>('POST', `/subjects/${encodeURIComponent(subject)}`, {
        schema: JSON.stringify(schema),
        schemaType: 'AVRO',
      });
      return found.id;
    } catch (error) {
      if (error instanceof RegistryError && error.status === 404) return undefined;
      throw error;
    }
  }

  /** The registry's own verdict against the latest version (true when the subject is new). */
  async registryAccepts(subject: string, schema: unknown): Promise<boolean> {
    try {
      const answer = await this.call<{ is_compatible: boolean }>(
        'POST',
        `/compatibility/subjects/${encodeURIComponent(subject)}/versions/latest`,
        { schema: JSON.stringify(schema), schemaType: 'AVRO' },
      );
      return answer.is_compatible;
    } catch (error) {
      if (error instanceof RegistryError && error.status === 404) return true;
      throw error;
    }
  }

  async register(subject: string, schema: unknown): Promise<number> {
    try {
      const answer = await this.call<{ id: number }>('POST', `/subjects/${encodeURIComponent(subject)}/versions`, {
        schema: JSON.stringify(schema),
        schemaType: 'AVRO',
      });
      return answer.id;
    } catch (error) {
      if (error instanceof RegistryError && error.status === 409) {
        throw new SchemaGateError(subject, 'incompatible', [error.message]);
      }
      throw error;
    }
  }

  /** Problems (naming fields) that make `schema` incompatible with the subject under its level. */
  async check(subject: string, schema: unknown): Promise<{ level: CompatibilityLevel; problems: string[] }> {
    const [level, history] = await Promise.all([this.compatibilityLevel(subject), this.history(subject)]);
    const problems = compatibilityProblems(schema, history, level);
    if (problems.length === 0 && !(await this.registryAccepts(subject, schema))) {
      problems.push(`the registry reports the schema incompatible under ${level}`);
    }
    return { level, problems };
  }

  /**
   * The schema gate: the id of `schema` in `subject`, registering it only when it is compatible and
   * autoRegister is on. Throws SchemaGateError otherwise, before anything reaches Kafka.
   */
  async gate(subject: string, schema: unknown, options: { autoRegister: boolean }): Promise<number> {
    const existing = await this.lookup(subject, schema);
    if (existing !== undefined) return existing;
    const { problems } = await this.check(subject, schema);
    if (problems.length > 0) throw new SchemaGateError(subject, 'incompatible', problems);
    if (!options.autoRegister) throw new SchemaGateError(subject, 'unregistered', []);
    return this.register(subject, schema);
  }

  /**
   * The writer schema registered under `id`, cached (ids are immutable). Callers asking for the same
   * id at once share one request: a sink's consumers all meet a new schema in their first records.
   * A failed request is not cached; the next caller asks again.
   */
  typeOf(id: number): Promise<avro.Type> {
    let type = this.schemasById.get(id);
    if (type === undefined) {
      type = this.call<{ schema: string }>('GET', `/schemas/ids/${id}`).then((answer) =>
        avro.Type.forSchema(JSON.parse(answer.schema) as avro.Schema),
      );
      this.schemasById.set(id, type);
      type.catch(() => this.schemasById.delete(id));
    }
    return type;
  }
}

/** Confluent wire format: magic byte 0, 4-byte big-endian schema id, Avro binary. */
export function encodeWire(schemaId: number, type: avro.Type, value: unknown): Buffer {
  const body = type.toBuffer(value);
  const out = Buffer.allocUnsafe(5 + body.length);
  out.writeUInt8(0, 0);
  out.writeUInt32BE(schemaId, 1);
  body.copy(out, 5);
  return out;
}

export function wireSchemaId(message: Buffer): number {
  if (message.length < 5 || message.readUInt8(0) !== 0) {
    throw new Error('not in Confluent wire format (expected magic byte 0 and a 4-byte schema id)');
  }
  return message.readUInt32BE(1);
}
