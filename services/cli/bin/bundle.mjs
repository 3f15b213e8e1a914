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

function build() {
  const esbuild = createRequire(import.meta.url)('esbuild');
  fs.mkdirSync(path.dirname(OUT), { recursive: true });
  // Processes starting together (the demo's services) each build to their own name; rename is atomic.
  const scratch = `${OUT}.${process.pid}.tmp`;
  esbuild.buildSync({
    entryPoints: [ENTRY],
    outfile: scratch,
    bundle: true,
    packages: 'external',
    platform: 'node',
    format: 'esm',
    target: 'node20',
    sourcemap: 'linked',
    sourcesContent: false,
    logLevel: 'error',
  });
  fs.renameSync(`${scratch}.map`, `${OUT}.map`);
  // The bundle names its map by the scratch name; point it at the final one.
  const code = fs
    .readFileSync(scratch, 'utf8')
    .replace(/\/\/# sourceMappingURL=.*$/m, `//# sourceMappingURL=${path.basename(OUT)}.map`);
  fs.writeFileSync(scratch, code);
  fs.renameSync(scratch, OUT);
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
