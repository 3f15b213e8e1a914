import type { Queryable } from '../db/index.ts';
import { type FingerprintStore, type StoredResponse, UnknownOutcomeError } from './index.ts';

/** Fingerprints in Postgres, so "sent once" holds across retries, restarts and processes. */
export class PgFingerprintStore implements FingerprintStore {
  constructor(private readonly db: Queryable) {}

  async begin(fingerprint: string, method: string, url: string): Promise<'new' | StoredResponse> {
    const inserted = await this.db.query(
      `INSERT INTO http_request_fingerprints (fingerprint, method, url) VALUES ($1, $2, $3)
       ON CONFLICT (fingerprint) DO NOTHING`,
      [fingerprint, method, url],
    );
    if (inserted.rowCount === 1) return 'new';
    const { rows } = await this.db.query<{ status: number | null; headers: Record<string, string>; body: string }>(
      'SELECT status, headers, body FROM http_request_fingerprints WHERE fingerprint = $1',
      [fingerprint],
    );
    const row = rows[0];
    if (!row || row.status === null) throw new UnknownOutcomeError(method, url, fingerprint);
    return { status: row.status, headers: row.headers, body: row.body };
  }

  async complete(fingerprint: string, response: StoredResponse): Promise<void> {
    await this.db.query(
      `UPDATE http_request_fingerprints SET status = $2, headers = $3, body = $4, completed_at = clock_timestamp()
       WHERE fingerprint = $1`,
      [fingerprint, response.status, JSON.stringify(response.headers), response.body],
    );
  }

  async forget(fingerprint: string): Promise<void> {
    await this.db.query('DELETE FROM http_request_fingerprints WHERE fingerprint = $1', [fingerprint]);
  }
}
