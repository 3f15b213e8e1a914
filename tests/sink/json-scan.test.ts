import { describe, expect, it } from 'vitest';
import { scanJsonObject } from '../../services/sink/json-scan.ts';

/** What JSON.parse says of the same text: an object (and its updated_at member), or not. */
function reference(text: string): { object: boolean; member?: unknown } {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return { object: false };
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return { object: false };
  return { object: true, member: (value as Record<string, unknown>).updated_at };
}

/** The scanner's answer in the same terms: the member's bytes read by JSON.parse. */
function scanned(text: string): { object: boolean; member?: unknown } {
  const bytes = Buffer.from(text);
  const scan = scanJsonObject(bytes, 'updated_at');
  if (!scan.object) return { object: false };
  const { member } = scan;
  return { object: true, member: member && JSON.parse(bytes.toString('utf8', member.start, member.end)) };
}

/** A deterministic pseudo-random sequence (a failure must reproduce). */
function random(seed: number): () => number {
  let state = seed;
  return () => {
    state = (state * 1103515245 + 12345) & 0x7fffffff;
    return state / 0x80000000;
  };
}

function randomValue(next: () => number, depth: number): unknown {
  // The top level is mostly an object, as payloads are.
  const pick = depth === 0 && next() < 0.8 ? 6 : Math.floor(next() * (depth > 3 ? 5 : 7));
  const strings = ['', 'a', 'updated_at', 'é', '"q"', 'back\\slash', 'tab\t', '\u2028', '😀', '\u0001', 'x'.repeat(40)];
  switch (pick) {
    case 0:
      return null;
    case 1:
      return next() < 0.5;
    case 2:
      return [0, -0, 1, -12.5, 1e21, 3.14e-7, 2 ** 53, -1e-300][Math.floor(next() * 8)];
    case 3:
    case 4:
      return strings[Math.floor(next() * strings.length)];
    case 5:
      return Array.from({ length: Math.floor(next() * 4) }, () => randomValue(next, depth + 1));
    default: {
      const object: Record<string, unknown> = {};
      for (let k = Math.floor(next() * 5); k > 0; k--) {
        object[strings[Math.floor(next() * strings.length)]!] = randomValue(next, depth + 1);
      }
      return object;
    }
  }
}

/** JSON.stringify, with random whitespace where JSON allows it. */
function withSpace(text: string, next: () => number): string {
  const spaces = [' ', '\n', '\r', '\t', '  '];
  let out = '';
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (c === '"' && (i === 0 || text[i - 1] !== '\\' || text[i - 2] === '\\')) inString = !inString;
    out += c;
    if (!inString && '{}[],:'.includes(c) && next() < 0.3) out += spaces[Math.floor(next() * spaces.length)];
  }
  return out;
}

describe('scanJsonObject', () => {
  it.each([
    '{}',
    ' {"a":1} ',
    '{"updated_at":"2026-01-01T00:00:00Z"}',
    '{"updated_at":1767225600000,"x":[1,{"updated_at":2}]}',
    '{"updated_at":1,"updated_at":2}',
    '{"updated_at":{"nested":[true,false,null]}}',
    '{"updated\\u005fat":"escaped key"}',
    '{"a":"\\"\\\\\\/\\b\\f\\n\\r\\t\\u00e9\\uD83D\\uDE00"}',
    '{"a":-0.5e+10,"b":0,"c":1E-2,"d":[]}',
    '{"é":"ü","emoji":"😀"}',
    // Deeper than the scanner's first stack of open containers (64).
    `{"deep":${'['.repeat(100)}{"a":${'{"b":'.repeat(50)}1${'}'.repeat(50)}}${']'.repeat(100)}}`,
  ])('accepts the object %s as JSON.parse does', (text) => {
    expect(scanned(text)).toEqual(reference(text));
    expect(reference(text).object).toBe(true);
  });

  it.each([
    '',
    ' ',
    '[]',
    '"text"',
    '42',
    'null',
    '{',
    '{"a"}',
    '{"a":}',
    '{"a":1,}',
    '{"a":1}}',
    '{"a":1} x',
    '{"a":1}{}',
    "{'a':1}",
    '{a:1}',
    '{"a":01}',
    '{"a":1.}',
    '{"a":.5}',
    '{"a":1e}',
    '{"a":+1}',
    '{"a":-}',
    '{"a":tru}',
    '{"a":True}',
    '{"a":NaN}',
    '{"a":"\\x"}',
    '{"a":"\\u12G4"}',
    '{"a":"\\u12"}',
    '{"a":"raw\ttab"}',
    '{"a":"unterminated}',
    '{"a":[1,2}',
    '{"a":[1,2,]}',
    '{"a" 1}',
    '\uFEFF{"a":1}',
  ])('rejects %j, as JSON.parse or the object rule does', (text) => {
    expect(scanned(text)).toEqual({ object: false });
    expect(reference(text).object).toBe(false);
  });

  it('agrees with JSON.parse on 20,000 generated texts and mutations of them', () => {
    const next = random(20261123);
    const alphabet = ['{', '}', '[', ']', '"', ',', ':', '\\', '0', '-', '.', 'e', 'u', 'n', ' ', '\t', '\u0001', 'é'];
    let accepted = 0;
    for (let round = 0; round < 20_000; round++) {
      let text = withSpace(JSON.stringify(randomValue(next, 0)), next);
      // Half are mutated: one character deleted, inserted or replaced.
      if (round % 2 === 1 && text.length > 0) {
        const at = Math.floor(next() * text.length);
        const c = alphabet[Math.floor(next() * alphabet.length)]!;
        const kind = Math.floor(next() * 3);
        text = text.slice(0, at) + (kind === 0 ? '' : c) + text.slice(kind === 1 ? at : at + 1);
      }
      const expected = reference(text);
      if (expected.object) accepted++;
      expect(scanned(text), text).toEqual(expected);
    }
    // The generator must exercise both answers.
    expect(accepted).toBeGreaterThan(2000);
    expect(accepted).toBeLessThan(18_000);
  });
});
