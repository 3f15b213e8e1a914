import { describe, expect, it } from 'vitest';
import { ByteChunks, JsonLine } from '../../libs/lake/json-bytes.ts';

function written(write: (line: JsonLine) => void, bound = 1024): string {
  const line = new JsonLine();
  line.start(bound);
  write(line);
  const chunks = new ByteChunks();
  line.copyTo(chunks);
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
      chunks.append(part, part.length);
    }
    const all = Buffer.concat(parts);
    expect(chunks.length).toBe(all.length);
    expect(Buffer.concat(chunks.toChunks()).equals(all)).toBe(true);
  });
});
