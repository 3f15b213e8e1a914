import type { Dirent } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';

/** What the drops ingester needs to know of a file before reading it. */
export interface DropFileStat {
  size: number;
  mtimeMs: number;
}

/**
 * Where dropped files are found. Names are plain file names (no folders): an S3 implementation maps
 * them to the keys under one prefix.
 */
export interface DropStorage {
  /** A description for messages: the folder, or the bucket and prefix. */
  readonly location: string;
  /** The files directly in the drop location, sorted; dotfiles (hidden, or a writer's scratch) left out. */
  list(): Promise<string[]>;
  /** Undefined when the file is gone (moved or deleted since it was listed). */
  stat(name: string): Promise<DropFileStat | undefined>;
  read(name: string): Promise<Buffer>;
}

/** A local folder, not searched recursively. */
export class LocalDirDropStorage implements DropStorage {
  readonly location: string;

  constructor(dir: string) {
    this.location = path.resolve(dir);
  }

  async list(): Promise<string[]> {
    const entries: Dirent[] = await fs.readdir(this.location, { withFileTypes: true });
    return entries
      .filter((entry) => entry.isFile() && !entry.name.startsWith('.'))
      .map((entry) => entry.name)
      .sort();
  }

  async stat(name: string): Promise<DropFileStat | undefined> {
    try {
      const found = await fs.stat(path.join(this.location, name));
      return { size: found.size, mtimeMs: found.mtimeMs };
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw error;
    }
  }

  read(name: string): Promise<Buffer> {
    return fs.readFile(path.join(this.location, name));
  }
}
