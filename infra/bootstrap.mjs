// Installs the dependencies when they are missing or older than package-lock.json, so `npm run demo`
// and `npm test` work on a fresh clone. Plain JavaScript: it runs before anything is installed.
import { execSync } from 'node:child_process';
import fs from 'node:fs';

const installed = 'node_modules/.package-lock.json';
const stale = !fs.existsSync(installed) || fs.statSync(installed).mtimeMs < fs.statSync('package-lock.json').mtimeMs;
if (stale) {
  process.stderr.write('installing dependencies (npm install)...\n');
  // npm install, not npm ci: the lock cannot list every platform's optional binaries (see the README).
  execSync('npm install --no-audit --no-fund --loglevel=error', { stdio: 'inherit' });
}
