/**
 * The gate's check of a JSON-text payload, made on its UTF-8 bytes: is it one JSON object (RFC 8259,
 * as JSON.parse reads it), and where is the value of one of its top-level members. Nothing is built:
 * turning each payload into a string and then a JavaScript object made a fifth of all the sink
 * allocated (bench:sink, V8's sampling heap profiler), and the gate needs only these two answers.
 */

/** Where a member's value lies in the scanned bytes: [start, end). */
export interface ValueRange {
  start: number;
  end: number;
}

/** A JSON object's bytes: `member` is the named top-level member's value (the last, if repeated). */
export type ObjectScan = { object: true; member: ValueRange | undefined } | { object: false };

const NOT_AN_OBJECT: ObjectScan = { object: false };

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const COMMA = 0x2c;
const COLON = 0x3a;
const OPEN_BRACE = 0x7b;
const CLOSE_BRACE = 0x7d;
const OPEN_BRACKET = 0x5b;
const CLOSE_BRACKET = 0x5d;
const MINUS = 0x2d;
const ZERO = 0x30;
const NINE = 0x39;

const IN_OBJECT = 1;
const IN_ARRAY = 2;
/** The containers open around the scan position; grown when a payload nests deeper. */
let open = new Uint8Array(64);

function isSpace(c: number): boolean {
  return c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09;
}

function skipSpace(bytes: Uint8Array, i: number): number {
  while (i < bytes.length && isSpace(bytes[i]!)) i++;
  return i;
}

function isDigit(c: number | undefined): boolean {
  return c !== undefined && c >= ZERO && c <= NINE;
}

function isHex(c: number): boolean {
  return (c >= ZERO && c <= NINE) || (c >= 0x41 && c <= 0x46) || (c >= 0x61 && c <= 0x66);
}

/** After the string starting at `i` (its opening quote), or -1. The bytes are valid UTF-8 already. */
function stringEnd(bytes: Uint8Array, i: number): number {
  const n = bytes.length;
  i++;
  while (i < n) {
    const c = bytes[i++]!;
    // Most bytes (letters, UTF-8 beyond ASCII) are above the backslash: one comparison for them.
    if (c > BACKSLASH) continue;
    if (c === QUOTE) return i;
    if (c < 0x20) return -1;
    if (c !== BACKSLASH) continue;
    if (i >= n) return -1;
    const escaped = bytes[i++]!;
    if (escaped === 0x75) {
      // \uXXXX
      if (i + 4 > n || !isHex(bytes[i]!) || !isHex(bytes[i + 1]!) || !isHex(bytes[i + 2]!) || !isHex(bytes[i + 3]!))
        return -1;
      i += 4;
    } else if (
      escaped !== QUOTE &&
      escaped !== BACKSLASH &&
      escaped !== 0x2f && // /
      escaped !== 0x62 && // b
      escaped !== 0x66 && // f
      escaped !== 0x6e && // n
      escaped !== 0x72 && // r
      escaped !== 0x74 // t
    ) {
      return -1;
    }
  }
  return -1;
}

/** After the number starting at `i`, or -1: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? */
function numberEnd(bytes: Uint8Array, i: number): number {
  if (bytes[i] === MINUS) i++;
  if (bytes[i] === ZERO) i++;
  else if (isDigit(bytes[i])) while (isDigit(bytes[i])) i++;
  else return -1;
  if (bytes[i] === 0x2e) {
    i++;
    if (!isDigit(bytes[i])) return -1;
    while (isDigit(bytes[i])) i++;
  }
  if (bytes[i] === 0x65 || bytes[i] === 0x45) {
    i++;
    if (bytes[i] === 0x2b || bytes[i] === MINUS) i++;
    if (!isDigit(bytes[i])) return -1;
    while (isDigit(bytes[i])) i++;
  }
  return i;
}

/** After the literal `word` (true, false, null) at `i`, or -1. */
function literalEnd(bytes: Uint8Array, i: number, word: string): number {
  if (i + word.length > bytes.length) return -1;
  for (let k = 0; k < word.length; k++) if (bytes[i + k] !== word.charCodeAt(k)) return -1;
  return i + word.length;
}

/** Whether the key [start, end) (quotes included) is `name` once its escapes are read. */
function keyIs(bytes: Uint8Array, start: number, end: number, name: MemberName): boolean {
  const { utf8 } = name;
  let same = end - start - 2 === utf8.length;
  for (let k = 0; same && k < utf8.length; k++) same = bytes[start + 1 + k] === utf8[k];
  if (same) return true;
  // An escaped key (rare) may still spell the name: read it as JSON.parse would.
  let escaped = false;
  for (let k = start + 1; !escaped && k < end - 1; k++) escaped = bytes[k] === BACKSLASH;
  if (!escaped) return false;
  return JSON.parse(Buffer.from(bytes.buffer, bytes.byteOffset + start, end - start).toString()) === name.text;
}

interface MemberName {
  text: string;
  utf8: Uint8Array;
}
const names = new Map<string, MemberName>();

/** Set by valueAfterKey: whether the key it read names the member looked for. */
let keyMatched = false;

/**
 * Reads a key at `i` and its colon; the start of the member's value, or -1. At the top level
 * (`topLevel`), sets keyMatched when the key is `name`.
 */
function valueAfterKey(bytes: Uint8Array, i: number, name: MemberName, topLevel: boolean): number {
  if (bytes[i] !== QUOTE) return -1;
  const keyEnd = stringEnd(bytes, i);
  if (keyEnd === -1) return -1;
  const colon = skipSpace(bytes, keyEnd);
  if (bytes[colon] !== COLON) return -1;
  keyMatched = topLevel && keyIs(bytes, i, keyEnd, name);
  return skipSpace(bytes, colon + 1);
}

/**
 * Scans `bytes` (valid UTF-8) as one JSON value. Not an object, or not JSON, gives `object: false`
 * (the gate then asks JSON.parse why). One pass, no recursion: nesting depth is bounded by memory only.
 */
export function scanJsonObject(bytes: Uint8Array, memberName: string): ObjectScan {
  let name = names.get(memberName);
  if (name === undefined) {
    name = { text: memberName, utf8: Buffer.from(memberName) };
    names.set(memberName, name);
  }
  const n = bytes.length;
  let i = skipSpace(bytes, 0);
  if (bytes[i] !== OPEN_BRACE) return NOT_AN_OBJECT;
  let depth = 0;
  let member: ValueRange | undefined;
  /** Start of the named member's value while it is being scanned, else -1. */
  let memberStart = -1;
  // Each turn scans one value, from its first byte at i, and what follows it up to the next value.
  for (;;) {
    let c = bytes[i];
    if (c === OPEN_BRACE || c === OPEN_BRACKET) {
      if (depth === open.length) {
        const deeper = new Uint8Array(open.length * 2);
        deeper.set(open);
        open = deeper;
      }
      open[depth++] = c === OPEN_BRACE ? IN_OBJECT : IN_ARRAY;
      i = skipSpace(bytes, i + 1);
      const empty = bytes[i] === (c === OPEN_BRACE ? CLOSE_BRACE : CLOSE_BRACKET);
      if (!empty) {
        if (c === OPEN_BRACE) {
          i = valueAfterKey(bytes, i, name, depth === 1);
          if (i === -1) return NOT_AN_OBJECT;
          if (keyMatched) memberStart = i;
        }
        continue;
      }
      depth--;
      i++;
    } else if (c === QUOTE) i = stringEnd(bytes, i);
    else if (c === MINUS || isDigit(c)) i = numberEnd(bytes, i);
    else if (c === 0x74) i = literalEnd(bytes, i, 'true');
    else if (c === 0x66) i = literalEnd(bytes, i, 'false');
    else if (c === 0x6e) i = literalEnd(bytes, i, 'null');
    else return NOT_AN_OBJECT;
    if (i === -1) return NOT_AN_OBJECT;
    // A value ended at i: close the containers that end with it, then a comma leads to the next value.
    for (;;) {
      if (memberStart >= 0 && depth === 1) {
        member = { start: memberStart, end: i };
        memberStart = -1;
      }
      i = skipSpace(bytes, i);
      if (depth === 0) return i === n ? { object: true, member } : NOT_AN_OBJECT;
      c = bytes[i];
      const inObject = open[depth - 1] === IN_OBJECT;
      if (c === (inObject ? CLOSE_BRACE : CLOSE_BRACKET)) {
        depth--;
        i++;
        continue;
      }
      if (c !== COMMA) return NOT_AN_OBJECT;
      i = skipSpace(bytes, i + 1);
      if (inObject) {
        i = valueAfterKey(bytes, i, name, depth === 1);
        if (i === -1) return NOT_AN_OBJECT;
        if (keyMatched) memberStart = i;
      }
      break;
    }
  }
}
