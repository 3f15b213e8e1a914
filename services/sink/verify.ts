import readline from 'node:readline';
import type { Queryable } from '../../libs/db/index.ts';
import type { LakeStorage } from '../../libs/lake/storage.ts';

/** What `verify` found in one layer of the output, against the accepted events. */
export interface LayerReport {
  layer: 'bronze' | 'silver';
  accepted: number;
  distinctInOutput: number;
  rowsInOutput: number;
  missing: number;
  duplicated: number;
  extra: number;
  examples: { missing: string[]; duplicated: string[]; extra: string[] };
}

const EXAMPLES = 5;
const keyOf = (source: string, eventId: string) => `${source}/${eventId}`;
const idOrder = new Intl.Collator('en', { numeric: true }).compare;

/** The first `n` ids in natural order ("x-2" before "x-10"), so reports read the same on every run. */
function firstInOrder(ids: string[], n: number): string[] {
  const first: string[] = [];
  for (const id of ids) {
    if (first.length === n && idOrder(id, first[n - 1]!) >= 0) continue;
    first.push(id);
    first.sort(idOrder);
    if (first.length > n) first.pop();
  }
  return first;
}

/** Accepted events (raw_events), optionally of some sources only, as "source/event_id". */
export async function acceptedEvents(db: Queryable, sources: string[]): Promise<Set<string>> {
  const { rows } = await db.query<{ source: string; event_id: string }>(
    sources.length > 0
      ? 'SELECT source, event_id FROM raw_events WHERE source = ANY($1::text[])'
      : 'SELECT source, event_id FROM raw_events',
    sources.length > 0 ? [sources] : [],
  );
  return new Set(rows.map((r) => keyOf(r.source, r.event_id)));
}

function compare(layer: LayerReport['layer'], accepted: Set<string>, counts: Map<string, number>): LayerReport {
  const missing: string[] = [];
  const duplicated: string[] = [];
  const extra: string[] = [];
  let rows = 0;
  for (const id of accepted) if (!counts.has(id)) missing.push(id);
  for (const [id, count] of counts) {
    rows += count;
    if (count > 1) duplicated.push(id);
    if (!accepted.has(id)) extra.push(id);
  }
  return {
    layer,
    accepted: accepted.size,
    distinctInOutput: counts.size,
    rowsInOutput: rows,
    missing: missing.length,
    duplicated: duplicated.length,
    extra: extra.length,
    examples: {
      missing: firstInOrder(missing, EXAMPLES),
      duplicated: firstInOrder(duplicated, EXAMPLES),
      extra: firstInOrder(extra, EXAMPLES),
    },
  };
}

function sourceOf(key: string): string | undefined {
  const match = /(?:^|\/)source=([^/]+)\//.exec(key);
  return match ? decodeURIComponent(match[1]!) : undefined;
}

/** Counts every bronze line by source/event_id. */
export async function bronzeCounts(storage: LakeStorage, sources: string[]): Promise<Map<string, number>> {
  const counts = new Map<string, number>();
  for (const key of await storage.list('bronze')) {
    if (!key.endsWith('.jsonl')) continue;
    const source = sourceOf(key);
    if (sources.length > 0 && (!source || !sources.includes(source))) continue;
    const lines = readline.createInterface({ input: storage.readStream(key), crlfDelay: Number.POSITIVE_INFINITY });
    let n = 0;
    for await (const line of lines) {
      n += 1;
      if (line === '') continue;
      let parsed: { source?: unknown; event_id?: unknown };
      try {
        parsed = JSON.parse(line) as typeof parsed;
      } catch (error) {
        throw new Error(`${key}:${n}: not a JSON line (${(error as Error).message})`);
      }
      const id = keyOf(String(parsed.source), String(parsed.event_id));
      counts.set(id, (counts.get(id) ?? 0) + 1);
    }
  }
  return counts;
}

/** Counts every row of the silver event datasets (silver/<source>/) by source/event_id. */
export async function silverCounts(storage: LakeStorage, sources: string[]): Promise<Map<string, number>> {
  const files = (await storage.list('silver')).filter((key) => {
    const dataset = key.split('/')[1] ?? '';
    if (!key.endsWith('.parquet') || dataset.endsWith('_latest')) return false;
    return sources.length === 0 || sources.includes(decodeURIComponent(dataset));
  });
  const counts = new Map<string, number>();
  if (files.length === 0) return counts;
  // Loaded when used: DuckDB's library adds about 30 MB to any process (the sink's too) that imports it.
  const { DuckDBInstance } = await import('@duckdb/node-api');
  const instance = await DuckDBInstance.create(':memory:', { threads: '1' });
  const db = await instance.connect();
  try {
    const list = files.map((k) => `'${(storage.localPath(k) ?? k).replaceAll("'", "''")}'`).join(', ');
    const result = await db.runAndReadAll(
      `SELECT source, event_id, count(*)::INTEGER AS n FROM read_parquet([${list}]) GROUP BY ALL`,
    );
    for (const [source, eventId, n] of result.getRowsJS() as [string, string, number][]) {
      counts.set(keyOf(source, eventId), n);
    }
  } finally {
    db.closeSync();
    instance.closeSync();
  }
  return counts;
}

export async function verifyOutput(
  db: Queryable,
  storage: LakeStorage,
  options: { sources?: string[]; layers?: Array<'bronze' | 'silver'> } = {},
): Promise<LayerReport[]> {
  const sources = options.sources ?? [];
  const layers = options.layers ?? ['bronze', 'silver'];
  const accepted = await acceptedEvents(db, sources);
  const reports: LayerReport[] = [];
  if (layers.includes('bronze')) reports.push(compare('bronze', accepted, await bronzeCounts(storage, sources)));
  if (layers.includes('silver')) reports.push(compare('silver', accepted, await silverCounts(storage, sources)));
  return reports;
}

export function isClean(reports: LayerReport[]): boolean {
  return reports.every((r) => r.missing === 0 && r.duplicated === 0 && r.extra === 0);
}
