import { describe, expect, it } from 'vitest';
import { ByteChunks, JsonLine, jsonStringBound as jsonStringBoundFor } from '../../libs/lake/json-bytes.ts';

function written(write: (line: JsonLine) => void, bound = 1024): string {
  const chunks = new ByteChunks();
  const line = new JsonLine();
  line.start(chunks, bound);
  write(line);
  chunks.commit(line.length);
  return Buffer.concat(chunks.toChunks()).toString('utf8');
}

describe('JsonLine', () => {
  it('writes string literals byte for byte as JSON.stringify does', () => {
    const texts = [
      '',
      'plain-id_1',
      'quo"te',
      'back\\slash',
      'tab\there',
      '\u0000\u001f',
      'del\u007f',
      'ünï ✓',
      '🚀',
      '\ud800 lone',
    ];
    for (const text of texts) {
      expect(written((line) => line.string(text))).toBe(JSON.stringify(text));
    }
  });

  it('writes times as Date.toISOString does, 1970 to 9999', () => {
    const times = [
      0,
      1,
      999,
      1000,
      59_999,
      86_399_999,
      86_400_000,
      Date.UTC(2026, 2, 1, 12, 3, 4, 56),
      Date.UTC(9999, 11, 31, 23, 59, 59, 999),
    ];
    for (let i = 0; i < 1000; i++) times.push(Math.floor(Math.random() * Date.UTC(9999, 11, 31)));
    for (const ms of times)
      expect(written((line) => line.isoTime(ms))).toBe(JSON.stringify(new Date(ms).toISOString()));
  });

  it('writes times from the kept text of their second, or anew, always as Date.toISOString does', () => {
    const chunks = new ByteChunks();
    const line = new JsonLine();
    const times = [
      Date.UTC(2026, 2, 1, 12, 0, 0, 5),
      Date.UTC(2026, 2, 1, 12, 0, 0, 999),
      Date.UTC(2026, 2, 1, 12, 0, 1),
      0,
    ];
    for (const ms of times) {
      line.start(chunks, 64);
      line.isoTime(ms);
      line.ascii(',');
      chunks.commit(line.length);
    }
    const expected = times.map((ms) => `${JSON.stringify(new Date(ms).toISOString())},`).join('');
    expect(Buffer.concat(chunks.toChunks()).toString()).toBe(expected);
  });

  it('writes lines in place one after another, across chunks, keeping only what is committed', () => {
    const chunks = new ByteChunks();
    const line = new JsonLine();
    let expected = '';
    for (let i = 0; i < 2000; i++) {
      const text = `line ${i} ${'x'.repeat(i % 300)}`;
      line.start(chunks, jsonStringBoundFor(text) + 1);
      line.string(text);
      line.ascii('\n');
      // Every third line is dropped (as bronzeUnits drops a line that moves to the next file).
      if (i % 3 === 2) continue;
      chunks.commit(line.length);
      expected += `${JSON.stringify(text)}\n`;
    }
    expect(chunks.length).toBe(Buffer.byteLength(expected));
    expect(Buffer.concat(chunks.toChunks()).toString()).toBe(expected);
  });

  it('keeps UTF-8 text as is and grows for lines larger than its buffer', () => {
    const big = `{"x":"${'é'.repeat(40_000)}"}`;
    expect(written((line) => line.utf8(big), big.length * 3)).toBe(big);
  });
});

describe('ByteChunks', () => {
  it('holds appended bytes in order across chunks', () => {
    const chunks = new ByteChunks();
    const parts: Buffer[] = [];
    for (let i = 0; i < 500; i++) {
      const part = Buffer.alloc(1 + ((i * 7919) % 9000), i % 251);
      parts.push(part);
      chunks.append(part);
    }
    const all = Buffer.concat(parts);
    expect(chunks.length).toBe(all.length);
    expect(Buffer.concat(chunks.toChunks()).equals(all)).toBe(true);
  });
});
