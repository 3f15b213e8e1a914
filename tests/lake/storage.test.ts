import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { LocalDirStorage, StorageKeyError } from '../../libs/lake/storage.ts';

const root = () => fs.mkdtempSync(path.join(os.tmpdir(), 'conveyor-storage-'));

describe('local directory storage', () => {
  it('replaces a file whole and leaves no scratch file behind', async () => {
    const storage = new LocalDirStorage(root());
    await storage.put('a/b/c.jsonl', 'one\n');
    await storage.put('a/b/c.jsonl', 'two\n');
    expect((await storage.read('a/b/c.jsonl')).toString()).toBe('two\n');
    expect(fs.readdirSync(path.join(storage.root, 'a/b'))).toEqual(['c.jsonl']);
    expect(await storage.list('a')).toEqual(['a/b/c.jsonl']);
  });

  it('writes chunks in order, more of them than one writev takes, empty ones included', async () => {
    const storage = new LocalDirStorage(root());
    const chunks = Array.from({ length: 2500 }, (_, i) => Buffer.from(i % 7 === 0 ? '' : `${i},`));
    await storage.put('many.txt', chunks);
    expect((await storage.read('many.txt')).equals(Buffer.concat(chunks))).toBe(true);
  });

  it('writes into a folder that was removed after an earlier write made it', async () => {
    const storage = new LocalDirStorage(root());
    await storage.put('a/b/c.jsonl', 'one\n');
    fs.rmSync(path.join(storage.root, 'a'), { recursive: true });
    await storage.put('a/b/d.jsonl', 'two\n');
    expect(await storage.list('a')).toEqual(['a/b/d.jsonl']);
  });

  it('publishes nothing when the producer of a file fails', async () => {
    const storage = new LocalDirStorage(root());
    await expect(
      storage.putFrom('x/y.parquet', async (scratch) => {
        fs.writeFileSync(scratch, 'partial');
        throw new Error('writer died');
      }),
    ).rejects.toThrow('writer died');
    expect(fs.readdirSync(path.join(storage.root, 'x'))).toEqual([]);
  });

  it('hides scratch files of a crashed writer from listings', async () => {
    const storage = new LocalDirStorage(root());
    fs.mkdirSync(path.join(storage.root, 'bronze'));
    fs.writeFileSync(path.join(storage.root, 'bronze', '.f.jsonl.tmp-abc'), 'half');
    expect(await storage.list('bronze')).toEqual([]);
  });

  it('refuses keys that escape the root', async () => {
    const storage = new LocalDirStorage(root());
    await expect(storage.put('../evil', 'x')).rejects.toThrow(StorageKeyError);
    await expect(storage.put('/abs', 'x')).rejects.toThrow(StorageKeyError);
  });
});
