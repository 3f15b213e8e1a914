import { parquetReadObjects } from 'hyparquet';

export const FORMATS = ['csv', 'json', 'ndjson', 'parquet'] as const;
export type DropFormat = (typeof FORMATS)[number];

const BY_EXTENSION: Record<string, DropFormat> = {
  '.csv': 'csv',
  '.json': 'json',
  '.ndjson': 'ndjson',
  '.jsonl': 'ndjson',
  '.parquet': 'parquet',
};

/** The format a file's extension names (case-insensitive), or undefined for any other file. */
export function formatOf(fileName: string): DropFormat | undefined {
  const dot = fileName.lastIndexOf('.');
  return dot < 0 ? undefined : BY_EXTENSION[fileName.slice(dot).toLowerCase()];
}

/** One record of a file and where it starts, for messages: "line 12" (text formats) or undefined. */
export interface ParsedRecord {
  value: Record<string, unknown>;
  line?: number;
}

/** A file that cannot be read as its format; `record` and `line` are 1-based when known. */
export class DropFormatError extends Error {
  constructor(
    readonly problem: string,
    readonly record?: number,
    readonly line?: number,
  ) {
    super(problem);
    this.name = 'DropFormatError';
  }
}

function isObject(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

function kindOf(value: unknown): string {
  return value === null ? 'null' : Array.isArray(value) ? 'an array' : `a ${typeof value}`;
}

function decodeText(bytes: Buffer): string {
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    throw new DropFormatError('not valid UTF-8 text');
  }
  return text.startsWith('\uFEFF') ? text.slice(1) : text;
}

/**
 * RFC 4180: fields separated by commas, records by CRLF or LF, a field in double quotes may hold
 * commas, line breaks and doubled quotes. The first record names the columns; every value is text.
 * Empty lines are skipped. Anything else that does not fit (a quote inside an unquoted field, text
 * after a closing quote, an unclosed quote, a row with another number of fields) refuses the file.
 */
export function parseCsv(text: string): ParsedRecord[] {
  const rows: Array<{ fields: string[]; line: number }> = [];
  let line = 1;
  let i = 0;
  while (i < text.length) {
    if (text[i] === '\n' || (text[i] === '\r' && text[i + 1] === '\n')) {
      i += text[i] === '\r' ? 2 : 1;
      line++;
      continue;
    }
    const startLine = line;
    const fields: string[] = [];
    for (;;) {
      let field = '';
      if (text[i] === '"') {
        const openedOn = line;
        i++;
        for (;;) {
          if (i >= text.length)
            throw new DropFormatError(`unclosed quote (opened on line ${openedOn})`, undefined, openedOn);
          const char = text[i]!;
          if (char === '"') {
            if (text[i + 1] === '"') {
              field += '"';
              i += 2;
              continue;
            }
            i++;
            break;
          }
          if (char === '\n') line++;
          field += char;
          i++;
        }
        const next = text[i];
        if (next !== undefined && next !== ',' && next !== '\n' && !(next === '\r' && text[i + 1] === '\n')) {
          throw new DropFormatError(`${JSON.stringify(next)} after a closing quote`, undefined, line);
        }
      } else {
        const start = i;
        while (i < text.length && text[i] !== ',' && text[i] !== '\n' && !(text[i] === '\r' && text[i + 1] === '\n')) {
          if (text[i] === '"') throw new DropFormatError('a quote inside an unquoted field', undefined, line);
          i++;
        }
        field = text.slice(start, i);
      }
      fields.push(field);
      if (text[i] === ',') {
        i++;
        continue;
      }
      break;
    }
    rows.push({ fields, line: startLine });
  }
  const [header, ...data] = rows;
  if (!header) return [];
  const seen = new Set<string>();
  for (const name of header.fields) {
    if (name === '') throw new DropFormatError('the header names an empty column', undefined, header.line);
    if (seen.has(name)) throw new DropFormatError(`the header names column "${name}" twice`, undefined, header.line);
    seen.add(name);
  }
  return data.map((row, index) => {
    if (row.fields.length !== header.fields.length) {
      throw new DropFormatError(
        `${row.fields.length} field(s) where the header has ${header.fields.length}`,
        index + 1,
        row.line,
      );
    }
    const value: Record<string, unknown> = {};
    header.fields.forEach((name, column) => {
      value[name] = row.fields[column];
    });
    return { value, line: row.line };
  });
}

/** One JSON object per line; blank lines are skipped. */
export function parseNdjson(text: string): ParsedRecord[] {
  const records: ParsedRecord[] = [];
  const lines = text.split('\n');
  lines.forEach((raw, index) => {
    const lineText = raw.endsWith('\r') ? raw.slice(0, -1) : raw;
    if (lineText.trim() === '') return;
    const line = index + 1;
    let value: unknown;
    try {
      value = JSON.parse(lineText);
    } catch (error) {
      throw new DropFormatError(`not valid JSON: ${(error as Error).message}`, records.length + 1, line);
    }
    if (!isObject(value)) throw new DropFormatError(`${kindOf(value)}, not a JSON object`, records.length + 1, line);
    records.push({ value, line });
  });
  return records;
}

/** One JSON array of objects. */
export function parseJsonArray(text: string): ParsedRecord[] {
  let document: unknown;
  try {
    document = JSON.parse(text);
  } catch (error) {
    throw new DropFormatError(`not valid JSON: ${(error as Error).message}`);
  }
  if (!Array.isArray(document)) throw new DropFormatError(`${kindOf(document)}, not a JSON array of objects`);
  return document.map((value: unknown, index) => {
    if (!isObject(value)) throw new DropFormatError(`${kindOf(value)}, not a JSON object`, index + 1);
    return { value };
  });
}

/** Parquet values as JSON can carry them: 64-bit integers as numbers when exact, else as text. */
function toJsonValue(value: unknown): unknown {
  if (typeof value === 'bigint') {
    return value >= BigInt(Number.MIN_SAFE_INTEGER) && value <= BigInt(Number.MAX_SAFE_INTEGER)
      ? Number(value)
      : value.toString();
  }
  if (value instanceof Date) return value.toISOString();
  if (value instanceof Uint8Array) return Buffer.from(value).toString('base64');
  if (Array.isArray(value)) return value.map(toJsonValue);
  if (isObject(value)) return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, toJsonValue(v)]));
  return value;
}

export async function parseParquet(bytes: Buffer): Promise<ParsedRecord[]> {
  const file = bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) as ArrayBuffer;
  let rows: Record<string, unknown>[];
  try {
    rows = await parquetReadObjects({ file });
  } catch (error) {
    throw new DropFormatError(`not a readable Parquet file: ${(error as Error).message}`);
  }
  return rows.map((row) => ({ value: toJsonValue(row) as Record<string, unknown> }));
}

/** Every record of a file, or a DropFormatError naming the first thing wrong. */
export async function parseRecords(format: DropFormat, bytes: Buffer): Promise<ParsedRecord[]> {
  switch (format) {
    case 'csv':
      return parseCsv(decodeText(bytes));
    case 'ndjson':
      return parseNdjson(decodeText(bytes));
    case 'json':
      return parseJsonArray(decodeText(bytes));
    case 'parquet':
      return parseParquet(bytes);
  }
}
