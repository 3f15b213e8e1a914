// The CLI runs from one bundle of its TypeScript (.build/conveyor.mjs), made by esbuild (which tsx
// already brings) and made again whenever a source file is newer: there is no build step to forget,
// and a long-running service does not carry a TypeScript loader thread (about 35 MB each).
import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { pathToFileURL } from 'node:url';

const ROOT = path.resolve(import.meta.dirname, '../../..');
const ENTRY = path.join(ROOT, 'services/cli/src/main.ts');
const OUT = path.join(ROOT, '.build/conveyor.mjs');
const SOURCE_DIRS = ['libs', 'services', 'infra'].map((d) => path.join(ROOT, d));

function newestSourceMs() {
  let newest = 0;
  for (const dir of SOURCE_DIRS) {
    if (!fs.existsSync(dir)) continue;
    for (const entry of fs.readdirSync(dir, { recursive: true, withFileTypes: true })) {
      if (!entry.isFile() || !entry.name.endsWith('.ts')) continue;
      const full = path.join(entry.parentPath, entry.name);
      if (full.includes(`${path.sep}node_modules${path.sep}`) || full.includes(`${path.sep}target${path.sep}`))
        continue;
      newest = Math.max(newest, fs.statSync(full).mtimeMs);
    }
  }
  return newest;
}

function builtMs() {
  try {
    return fs.statSync(OUT).mtimeMs;
  } catch {
    return -1;
  }
}

/**
 * Builds the entry (OUT) and its chunks. Each command loads its service with import(), and with
 * code splitting each chunk imports its own packages: a sink never loads the webhook's or the
 * pullers' libraries (about 12 MB less per service). Chunk names carry a hash of their content, so
 * processes building at the same time write the same files; each file is written under a scratch
 * name and renamed, the entry last.
 */
function build() {
  const esbuild = createRequire(import.meta.url)('esbuild');
  const outDir = path.dirname(OUT);
  // Beside outDir, at the same depth, so the source maps' relative paths hold after the move.
  const scratchDir = `${outDir}.tmp-${process.pid}`;
  fs.rmSync(scratchDir, { recursive: true, force: true });
  try {
    esbuild.buildSync({
      entryPoints: { [path.basename(OUT, '.mjs')]: ENTRY },
      outdir: scratchDir,
      outExtension: { '.js': '.mjs' },
      chunkNames: 'chunk-[hash]',
      bundle: true,
      splitting: true,
      packages: 'external',
      platform: 'node',
      format: 'esm',
      target: 'node20',
      sourcemap: 'linked',
      sourcesContent: false,
      logLevel: 'error',
    });
    fs.mkdirSync(outDir, { recursive: true });
    const entry = path.basename(OUT);
    const files = fs.readdirSync(scratchDir).sort((a, b) => Number(a === entry) - Number(b === entry));
    for (const file of files) fs.renameSync(path.join(scratchDir, file), path.join(outDir, file));
    // Chunks of earlier builds: a process imports its chunks when its command starts, so those an
    // hour old are no longer needed by anything running.
    const current = new Set(files);
    for (const file of fs.readdirSync(outDir)) {
      const full = path.join(outDir, file);
      if (file.startsWith('chunk-') && !current.has(file) && Date.now() - fs.statSync(full).mtimeMs > 3600_000) {
        fs.rmSync(full, { force: true });
      }
    }
  } finally {
    fs.rmSync(scratchDir, { recursive: true, force: true });
  }
}

/** The URL to import: the bundle, rebuilt if stale; null when it cannot be written (read-only install). */
export function freshBundle() {
  if (builtMs() < newestSourceMs()) {
    try {
      build();
    } catch (error) {
      if (!['EACCES', 'EROFS', 'EPERM'].includes(error.code)) throw error;
      return null;
    }
  }
  return pathToFileURL(OUT).href;
}
