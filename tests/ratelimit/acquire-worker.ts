// Takes N tokens from a shared bucket and prints when it got each one (ms since epoch), one per line.
import { createPool } from '../../libs/db/index.ts';
import { PgTokenBucket } from '../../libs/ratelimit/index.ts';

const [name, count, rate, burst] = process.argv.slice(2);
const pool = createPool({ max: 1 });
const bucket = new PgTokenBucket(pool, { name: name!, ratePerSecond: Number(rate), burst: Number(burst) });
const times: number[] = [];
for (let i = 0; i < Number(count); i++) {
  await bucket.acquire();
  times.push(Date.now());
}
process.stdout.write(`${times.join('\n')}\n`);
await pool.end();
