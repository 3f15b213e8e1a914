import fs from 'node:fs';
import path from 'node:path';
import avro from 'avsc';
import { projectPath } from '../config/index.ts';

/**
 * Data contracts kept as files: schemas/avro/envelope.avsc wraps every event; a source may declare a
 * typed payload in schemas/avro/sources/<source>.avsc (a record). The schema of a source's topic is
 * the envelope with its payload field typed by that record, or a JSON string when there is none.
 */

export const DEFAULT_SCHEMAS_DIR = projectPath('schemas', 'avro');

export interface TopicContract {
  source: string;
  schema: Record<string, unknown>;
  /** True when the payload is a declared record, false when it is a JSON string. */
  typedPayload: boolean;
  type: avro.Type;
}

function readJson(file: string): Record<string, unknown> {
  try {
    return JSON.parse(fs.readFileSync(file, 'utf8')) as Record<string, unknown>;
  } catch (error) {
    throw new Error(`${file}: not valid JSON (${(error as Error).message})`);
  }
}

/** Sources that declare a typed payload, by file name. */
export function declaredSources(dir = DEFAULT_SCHEMAS_DIR): string[] {
  const sourcesDir = path.join(dir, 'sources');
  if (!fs.existsSync(sourcesDir)) return [];
  return fs
    .readdirSync(sourcesDir)
    .filter((f) => f.endsWith('.avsc'))
    .map((f) => f.slice(0, -'.avsc'.length))
    .sort();
}

export function contractFor(source: string, dir = DEFAULT_SCHEMAS_DIR): TopicContract {
  const envelope = readJson(path.join(dir, 'envelope.avsc'));
  const payloadFile = path.join(dir, 'sources', `${source}.avsc`);
  const typedPayload = fs.existsSync(payloadFile);
  const fields = (envelope.fields as Array<Record<string, unknown>>).map((field) => {
    if (field.name !== 'payload' || !typedPayload) return field;
    const payload = readJson(payloadFile);
    if (payload.type !== 'record') throw new Error(`${payloadFile}: a payload contract must be an Avro record`);
    return { ...field, type: payload };
  });
  const schema = { ...envelope, fields };
  try {
    return { source, schema, typedPayload, type: avro.Type.forSchema(schema as avro.Schema) };
  } catch (error) {
    throw new Error(
      `${typedPayload ? payloadFile : 'envelope.avsc'}: invalid Avro schema (${(error as Error).message})`,
    );
  }
}

/** The first path in `value` that does not match `type`, for error messages. */
export function firstInvalidPath(type: avro.Type, value: unknown): string | undefined {
  let found: string | undefined;
  type.isValid(value, {
    errorHook: (pathParts: string[], got: unknown, expected: avro.Type) => {
      found ??= `${pathParts.join('.') || '<root>'}: expected ${expected.typeName ?? String(expected)}, got ${JSON.stringify(got) ?? 'undefined'}`;
    },
  });
  return found;
}
