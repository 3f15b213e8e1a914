import avro from 'avsc';

/**
 * Local Avro compatibility analysis. The registry stays the authority on whether a schema is
 * accepted; this names the fields that make it incompatible, which registries rarely do.
 */

export type CompatibilityLevel =
  | 'NONE'
  | 'BACKWARD'
  | 'BACKWARD_TRANSITIVE'
  | 'FORWARD'
  | 'FORWARD_TRANSITIVE'
  | 'FULL'
  | 'FULL_TRANSITIVE';

export const COMPATIBILITY_LEVELS: CompatibilityLevel[] = [
  'NONE',
  'BACKWARD',
  'BACKWARD_TRANSITIVE',
  'FORWARD',
  'FORWARD_TRANSITIVE',
  'FULL',
  'FULL_TRANSITIVE',
];

interface FieldLike {
  name: string;
  type: unknown;
  default?: unknown;
  aliases?: string[];
}

interface RecordLike {
  type: 'record';
  name: string;
  fields: FieldLike[];
}

function isRecord(schema: unknown): schema is RecordLike {
  return typeof schema === 'object' && schema !== null && (schema as { type?: unknown }).type === 'record';
}

function typeName(schema: unknown): string {
  if (typeof schema === 'string') return schema;
  if (Array.isArray(schema)) return `[${schema.map(typeName).join(', ')}]`;
  const s = schema as { type?: unknown; name?: string; logicalType?: string };
  if (s.name) return s.name;
  return s.logicalType ? `${String(s.type)}(${s.logicalType})` : String(s.type);
}

/**
 * Why data written with `writer` cannot be read with `reader`, one line per field path;
 * empty when it can. `role` words the messages: which side is the new schema.
 */
function readProblems(reader: unknown, writer: unknown, path: string, newIs: 'reader' | 'writer'): string[] {
  if (isRecord(reader) && isRecord(writer)) {
    const problems: string[] = [];
    for (const field of reader.fields) {
      const names = [field.name, ...(field.aliases ?? [])];
      const written = writer.fields.find((f) => names.includes(f.name));
      const fieldPath = path ? `${path}.${field.name}` : field.name;
      if (!written) {
        if (field.default === undefined) {
          problems.push(
            newIs === 'reader'
              ? `field '${fieldPath}' is new and has no default, so data written with the old schema cannot be read (add a default, or it is a rename without an alias)`
              : `field '${fieldPath}' is required by the old schema but the new schema removes or renames it (old readers would fail)`,
          );
        }
        continue;
      }
      problems.push(...readProblems(field.type, written.type, fieldPath, newIs));
    }
    return problems;
  }
  try {
    avro.Type.forSchema(reader as avro.Schema).createResolver(avro.Type.forSchema(writer as avro.Schema));
    return [];
  } catch {
    const [from, to] = newIs === 'reader' ? [writer, reader] : [reader, writer];
    return [
      `field '${path || '<root>'}' changes type from ${typeName(from)} to ${typeName(to)}, which Avro cannot resolve`,
    ];
  }
}

/**
 * Problems that make `candidate` incompatible with `previous` (oldest first) under `level`;
 * empty when compatible. Non-transitive levels compare with the latest version only.
 */
export function compatibilityProblems(candidate: unknown, previous: unknown[], level: CompatibilityLevel): string[] {
  if (level === 'NONE' || previous.length === 0) return [];
  const against = level.endsWith('_TRANSITIVE') ? previous : previous.slice(-1);
  const backward = level.startsWith('BACKWARD') || level.startsWith('FULL');
  const forward = level.startsWith('FORWARD') || level.startsWith('FULL');
  const problems = new Set<string>();
  for (const old of against) {
    if (backward) for (const p of readProblems(candidate, old, '', 'reader')) problems.add(p);
    if (forward) for (const p of readProblems(old, candidate, '', 'writer')) problems.add(p);
  }
  return [...problems];
}
