import { randomBytes } from 'node:crypto';
import { createReadStream, type Dirent } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import type { Readable } from 'node:stream';

/**
 * Where the sink's output lives. Every write is all-or-nothing: a reader sees the old object or the
 * new one, never a part. Paths are relative, '/'-separated keys, so an S3 implementation can follow.
 */
export interface LakeStorage {
  /** Durably replaces (or creates) the object at `key` with `data` (chunks: their bytes in order). */
  put(key: string, data: Buffer | string | readonly Buffer[]): Promise<void>;
  /**
   * Gives `produce` a local scratch path to write to (e.g. DuckDB's COPY ... TO), then publishes that
   * file durably at `key`. Returns its size in bytes.
   */
  putFrom(key: string, produce: (scratchPath: string) => Promise<void>): Promise<number>;
  /** Keys under `prefix` (recursive), sorted. Scratch files are never listed. */
  list(prefix: string): Promise<string[]>;
  read(key: string): Promise<Buffer>;
  readStream(key: string): Readable;
  remove(key: string): Promise<void>;
  /** A local path for readers that need one (DuckDB's read_parquet), or undefined when remote. */
  localPath(key: string): string | undefined;
}

const SCRATCH_MARK = '.tmp-';

/** Chunks per writev (Linux's IOV_MAX). */
const MAX_CHUNKS_PER_WRITE = 1024;

/**
 * Writes every byte, the chunks together (one writev, not one write per chunk: a bronze file is about
 * ten chunks). A write may take fewer bytes than it was given: the rest goes in the next.
 */
async function writeAll(handle: fs.FileHandle, data: Buffer | string | readonly Buffer[]): Promise<void> {
  let chunks = typeof data === 'string' ? [Buffer.from(data)] : Buffer.isBuffer(data) ? [data] : [...data];
  while (chunks.length > 0) {
    let { bytesWritten } = await handle.writev(chunks.slice(0, MAX_CHUNKS_PER_WRITE));
    let done = 0;
    while (done < chunks.length && bytesWritten >= chunks[done]!.length) bytesWritten -= chunks[done++]!.length;
    chunks = chunks.slice(done);
    if (bytesWritten > 0) chunks[0] = chunks[0]!.subarray(bytesWritten);
  }
}

export class StorageKeyError extends Error {
  constructor(key: string, problem: string) {
    super(`storage key "${key}": ${problem}`);
    this.name = 'StorageKeyError';
  }
}

/** A local directory: write to a scratch name beside the target, fsync it, rename, fsync the folder. */
export class LocalDirStorage implements LakeStorage {
  readonly root: string;
  /** Folders this process has created or found: a recursive mkdir per file cost more than the write. */
  private readonly madeDirs = new Set<string>();

  constructor(root: string) {
    this.root = path.resolve(root);
  }

  private resolve(key: string): string {
    if (key.startsWith('/') || key.split('/').some((part) => part === '..' || part === '')) {
      throw new StorageKeyError(key, 'must be relative, without empty or ".." segments');
    }
    return path.join(this.root, ...key.split('/'));
  }

  private async ensureDir(dir: string): Promise<void> {
    if (this.madeDirs.has(dir)) return;
    await fs.mkdir(dir, { recursive: true });
    if (this.madeDirs.size >= 10_000) this.madeDirs.clear();
    this.madeDirs.add(dir);
  }

  private scratchFor(target: string): string {
    return path.join(path.dirname(target), `.${path.basename(target)}${SCRATCH_MARK}${randomBytes(6).toString('hex')}`);
  }

  /** Makes the rename itself durable: without this a power cut can forget the new directory entry. */
  private async fsyncDir(dir: string): Promise<void> {
    const handle = await fs.open(dir, 'r');
    try {
      await handle.sync();
    } finally {
      await handle.close();
    }
  }

  /** A file another writer made (DuckDB): fsynced, then moved into place. */
  private async publish(scratch: string, target: string): Promise<void> {
    const handle = await fs.open(scratch, 'r+');
    try {
      await handle.sync();
    } finally {
      await handle.close();
    }
    await this.moveIntoPlace(scratch, target);
  }

  /** Renames a durable scratch file to its key, and makes the rename durable too. */
  private async moveIntoPlace(scratch: string, target: string): Promise<void> {
    await fs.rename(scratch, target);
    await this.fsyncDir(path.dirname(target));
  }

  async put(key: string, data: Buffer | string | readonly Buffer[]): Promise<void> {
    const target = this.resolve(key);
    const dir = path.dirname(target);
    await this.ensureDir(dir);
    const scratch = this.scratchFor(target);
    try {
      const handle = await fs.open(scratch, 'w').catch(async (error: NodeJS.ErrnoException) => {
        // The folder went away since we made it (removed by hand): make it again.
        if (error.code !== 'ENOENT') throw error;
        this.madeDirs.delete(dir);
        await this.ensureDir(dir);
        return fs.open(scratch, 'w');
      });
      // Written and fsynced through one handle: no second open just to sync.
      try {
        await writeAll(handle, data);
        await handle.sync();
      } finally {
        await handle.close();
      }
      await this.moveIntoPlace(scratch, target);
    } catch (error) {
      await fs.rm(scratch, { force: true });
      throw error;
    }
  }

  async putFrom(key: string, produce: (scratchPath: string) => Promise<void>): Promise<number> {
    const target = this.resolve(key);
    await fs.mkdir(path.dirname(target), { recursive: true });
    const scratch = this.scratchFor(target);
    try {
      await produce(scratch);
      const { size } = await fs.stat(scratch);
      await this.publish(scratch, target);
      return size;
    } catch (error) {
      await fs.rm(scratch, { force: true });
      throw error;
    }
  }

  async list(prefix: string): Promise<string[]> {
    const base = prefix === '' ? this.root : this.resolve(prefix.replace(/\/+$/, ''));
    let entries: Dirent[];
    try {
      // Entry types come with the listing: no stat per file (the sink lists the folders it writes).
      entries = await fs.readdir(base, { recursive: true, withFileTypes: true });
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw error;
    }
    const keys: string[] = [];
    for (const entry of entries) {
      if (!entry.isFile() || entry.name.includes(SCRATCH_MARK)) continue;
      keys.push(path.relative(this.root, path.join(entry.parentPath, entry.name)).split(path.sep).join('/'));
    }
    return keys.sort();
  }

  read(key: string): Promise<Buffer> {
    return fs.readFile(this.resolve(key));
  }

  readStream(key: string): Readable {
    return createReadStream(this.resolve(key));
  }

  async remove(key: string): Promise<void> {
    const target = this.resolve(key);
    await fs.rm(target, { force: true });
    await this.fsyncDir(path.dirname(target)).catch((error: NodeJS.ErrnoException) => {
      if (error.code !== 'ENOENT') throw error;
    });
  }

  localPath(key: string): string {
    return this.resolve(key);
  }
}
