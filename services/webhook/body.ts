import { hash } from 'node:crypto';

/** A request the service refuses: HTTP status, a stable code, and the field paths at fault. */
export class BadRequestError extends Error {
  constructor(
    readonly statusCode: number,
    readonly code: string,
    message: string,
    readonly problems: Array<{ path: string; message: string }> = [],
  ) {
    super(message);
    this.name = 'BadRequestError';
  }
}

// ignoreBOM keeps a leading BOM in the text, so the text re-encodes to exactly the received bytes.
const UTF8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

export function decodeUtf8(body: Buffer): string {
  try {
    return UTF8.decode(body);
  } catch {
    throw new BadRequestError(400, 'invalid_utf8', 'request body is not valid UTF-8');
  }
}

/** Nesting depth of a JSON text, found without parsing it, so a hostile body cannot exhaust the stack. */
function nestingDepth(text: string): number {
  let depth = 0;
  let max = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 34 /* " */) {
      // Jump to the closing quote with native indexOf (most of a body is string content): the first
      // quote not preceded by an odd run of backslashes.
      for (;;) {
        i = text.indexOf('"', i + 1);
        if (i === -1) return max;
        let slashes = 0;
        while (text.charCodeAt(i - 1 - slashes) === 92 /* \ */) slashes++;
        if ((slashes & 1) === 0) break;
      }
    } else if (c === 123 || c === 91 /* { [ */) {
      if (++depth > max) max = depth;
    } else if (c === 125 || c === 93 /* } ] */) depth--;
  }
  return max;
}

/** Parses a JSON object body: malformed, too deep or not an object → 400. */
export function parseJsonObject(text: string, maxDepth: number): Record<string, unknown> {
  if (nestingDepth(text) > maxDepth) {
    throw new BadRequestError(400, 'too_deep', `JSON nested deeper than ${maxDepth} levels`);
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw new BadRequestError(400, 'malformed_json', `request body is not valid JSON: ${(error as Error).message}`);
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new BadRequestError(400, 'not_an_object', 'request body must be a JSON object');
  }
  return value as Record<string, unknown>;
}

/**
 * Canonical JSON: object keys sorted by code unit, no whitespace, numbers and strings as
 * JSON.stringify writes them (the same as RFC 8785 for the values JSON.parse produces).
 */
export function canonicalJson(value: unknown): string {
  if (value === null || typeof value !== 'object') return JSON.stringify(value);
  // Plain loops and += rather than map/join: this runs for every event and dominates batch CPU time.
  let out: string;
  if (Array.isArray(value)) {
    out = '[';
    for (let i = 0; i < value.length; i++) out += (i > 0 ? ',' : '') + canonicalJson(value[i]);
    return `${out}]`;
  }
  const keys = Object.keys(value).sort();
  out = '{';
  for (let i = 0; i < keys.length; i++) {
    const key = keys[i]!;
    out += `${i > 0 ? ',' : ''}${JSON.stringify(key)}:${canonicalJson((value as Record<string, unknown>)[key])}`;
  }
  return `${out}}`;
}

export interface IngestFields {
  source: string;
  event_type: string;
  entity_id: string;
  /** Normalised: Date#toISOString() of the instant, so equal instants hash equally. */
  event_time: string;
  payload: Record<string, unknown>;
}

/** The seed-004 event id: sha256 of the canonical JSON of the five fields, lower-case hex. */
export function ingestEventId(fields: IngestFields): string {
  // One-shot hash: no Hash object per event.
  return hash('sha256', canonicalJson(fields), 'hex');
}

const DAYS_IN_MONTH = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
const ISO_8601 = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$/;

/**
 * Parses an ISO-8601 date-time with a zone (Z or ±hh:mm) and checks it lies in
 * [1970-01-01, now + maxFutureMs]. Digits beyond milliseconds are dropped.
 */
export function parseEventTime(value: string, path: string, nowMs: number, maxFutureMs: number): Date {
  const match = ISO_8601.exec(value);
  const bad = (message: string) => new BadRequestError(400, 'invalid_body', message, [{ path, message }]);
  if (!match) throw bad('must be an ISO-8601 date-time with a zone, e.g. 2025-12-28T23:59:59Z');
  const y = Number(match[1]);
  const mo = Number(match[2]);
  const d = Number(match[3]);
  // Arithmetic rather than a Date per call: this runs for every event of a batch.
  const daysInMonth = mo === 2 && y % 4 === 0 && (y % 100 !== 0 || y % 400 === 0) ? 29 : DAYS_IN_MONTH[mo - 1];
  if (daysInMonth === undefined || d < 1 || d > daysInMonth) throw bad(`is not a calendar date-time: ${value}`);
  if (Number(match[4]) > 23 || Number(match[5]) > 59 || Number(match[6]) > 59) {
    throw bad(`is not a calendar date-time: ${value}`);
  }
  const time = new Date(value);
  if (Number.isNaN(time.getTime())) throw bad(`is not a valid date-time: ${value}`);
  if (time.getTime() < 0) throw bad('is before 1970-01-01T00:00:00Z');
  if (time.getTime() > nowMs + maxFutureMs) {
    throw bad(`is more than ${Math.round(maxFutureMs / 1000)} s in the future`);
  }
  return time;
}
