import { createHmac } from 'node:crypto';
import { Agent, request } from 'undici';

/**
 * The demo's pushed traffic: signed GitHub-style webhook deliveries (some of them provider retries of
 * an earlier delivery) and POST /ingest batches. Everything is derived from a fixed seed, so a second
 * run sends byte-identical deliveries and events, and Conveyor must answer every one DUPLICATE.
 */

/** mulberry32: a tiny deterministic PRNG, so the traffic is the same on every run. */
function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export interface Delivery {
  id: string;
  event: string;
  body: string;
  /** True when this delivery re-sends an earlier one (same id, same body), as providers do on timeouts. */
  retry: boolean;
}

const GITHUB_EVENTS = ['push', 'issues', 'pull_request', 'star'] as const;

/** `total` deliveries of which about `retryShare` repeat an earlier delivery. */
export function githubDeliveries(total: number, retryShare: number, seed = 1): Delivery[] {
  const random = seededRandom(seed);
  const originals: Delivery[] = [];
  const all: Delivery[] = [];
  for (let i = 0; i < total; i++) {
    if (originals.length > 0 && random() < retryShare) {
      const earlier = originals[Math.floor(random() * originals.length)]!;
      all.push({ ...earlier, retry: true });
      continue;
    }
    const n = originals.length + 1;
    const event = GITHUB_EVENTS[n % GITHUB_EVENTS.length]!;
    const body = JSON.stringify({
      action: event === 'issues' ? 'opened' : undefined,
      delivery: n,
      repository: { full_name: `conveyor-demo/repo-${n % 7}` },
      sender: { login: `user-${Math.floor(random() * 50)}` },
      size: Math.floor(random() * 1000),
    });
    const delivery = { id: `demo-delivery-${String(n).padStart(6, '0')}`, event, body, retry: false };
    originals.push(delivery);
    all.push(delivery);
  }
  return all;
}

export interface IngestEvent {
  source: string;
  event_type: string;
  entity_id: string;
  event_time: string;
  payload: Record<string, unknown>;
}

/** `count` events for POST /ingest/batch, with fixed event times so their event ids never change. */
export function ingestEvents(source: string, count: number, seed = 2): IngestEvent[] {
  const random = seededRandom(seed);
  const start = Date.UTC(2026, 0, 1);
  return Array.from({ length: count }, (_, i) => ({
    source,
    event_type: i % 2 === 0 ? 'order.created' : 'order.paid',
    entity_id: `order-${Math.floor(i / 2)}`,
    event_time: new Date(start + i * 60_000).toISOString(),
    payload: { amount_cents: Math.floor(random() * 100_000), currency: 'EUR' },
  }));
}

export interface SendTally {
  sent: number;
  accepted: number;
  duplicates: number;
  /** Answers other than ACCEPTED / DUPLICATE, by status code: the demo reports them, it does not hide them. */
  rejected: Record<string, number>;
}

export function emptyTally(): SendTally {
  return { sent: 0, accepted: 0, duplicates: 0, rejected: {} };
}

function tallyStatus(tally: SendTally, status: unknown, count = 1): void {
  if (status === 'ACCEPTED') tally.accepted += count;
  else if (status === 'DUPLICATE') tally.duplicates += count;
  else tally.rejected[String(status)] = (tally.rejected[String(status)] ?? 0) + count;
}

/** How long a client waits before retrying a 503 (load shed) answer; the service says Retry-After. */
const SHED_RETRY_MS = 200;

async function post(
  dispatcher: Agent,
  url: string,
  headers: Record<string, string>,
  body: string,
): Promise<{ status: number; json: Record<string, unknown> }> {
  for (;;) {
    const answer = await request(url, { method: 'POST', headers, body, dispatcher });
    const json = (await answer.body.json().catch(() => ({}))) as Record<string, unknown>;
    // A shed request stored nothing; a real provider retries it, and so do we.
    if (answer.statusCode === 503) {
      await new Promise((r) => setTimeout(r, SHED_RETRY_MS));
      continue;
    }
    return { status: answer.statusCode, json };
  }
}

/**
 * Sends the deliveries, `concurrency` at a time, signed with `secret` as GitHub signs them; each
 * sender pauses `pauseMs` between deliveries (the fault drill spreads traffic over its kills).
 */
export async function sendDeliveries(
  url: string,
  secret: string,
  deliveries: Delivery[],
  pacing: { concurrency: number; pauseMs: number },
  tally: SendTally,
): Promise<void> {
  const { concurrency, pauseMs } = pacing;
  const dispatcher = new Agent({ connections: concurrency });
  let next = 0;
  const worker = async () => {
    while (next < deliveries.length) {
      const delivery = deliveries[next++]!;
      const signature = `sha256=${createHmac('sha256', secret).update(delivery.body).digest('hex')}`;
      const { status, json } = await post(
        dispatcher,
        url,
        {
          'content-type': 'application/json',
          'x-github-delivery': delivery.id,
          'x-github-event': delivery.event,
          'x-hub-signature-256': signature,
        },
        delivery.body,
      );
      tally.sent += 1;
      tallyStatus(tally, status < 300 ? json.status : status);
      if (pauseMs > 0) await new Promise((r) => setTimeout(r, pauseMs));
    }
  };
  try {
    await Promise.all(Array.from({ length: concurrency }, worker));
  } finally {
    await dispatcher.close();
  }
}

/** Posts the events in batches of at most `batchSize` to POST /ingest/batch. */
export async function sendIngestBatches(
  url: string,
  events: IngestEvent[],
  batchSize: number,
  tally: SendTally,
): Promise<void> {
  const dispatcher = new Agent({ connections: 1 });
  try {
    for (let i = 0; i < events.length; i += batchSize) {
      const batch = events.slice(i, i + batchSize);
      const { status, json } = await post(
        dispatcher,
        url,
        { 'content-type': 'application/json' },
        JSON.stringify({ events: batch }),
      );
      tally.sent += batch.length;
      if (status >= 300) {
        tallyStatus(tally, status, batch.length);
        continue;
      }
      for (const result of json.results as Array<{ status: string }>) tallyStatus(tally, result.status);
    }
  } finally {
    await dispatcher.close();
  }
}
