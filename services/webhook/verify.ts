import { createHmac, timingSafeEqual } from 'node:crypto';
import { verify as verifyGithub } from '@octokit/webhooks-methods';
import { Webhook, WebhookVerificationError } from 'standardwebhooks';

/**
 * Signature verification of the four schemes. Each takes the raw body, the request headers and the
 * source's active secrets (rotation: any one verifies) and either returns or throws a
 * VerificationError naming the check that failed. Errors never contain a secret or a signature.
 */

export type Scheme = 'github' | 'stripe' | 'standard-webhooks' | 'hmac';
export const SCHEMES: readonly Scheme[] = ['github', 'stripe', 'standard-webhooks', 'hmac'];

/** Providers retry for minutes, not hours; both Stripe and Standard Webhooks recommend five. */
export const TOLERANCE_SECONDS = 300;

export type FailedCheck = 'missing_header' | 'bad_format' | 'stale_timestamp' | 'no_matching_signature';

export class VerificationError extends Error {
  constructor(
    readonly check: FailedCheck,
    message: string,
  ) {
    super(message);
    this.name = 'VerificationError';
  }
}

export interface HmacOptions {
  /** Lower-case header name carrying the signature. */
  header: string;
  encoding: 'hex' | 'base64';
  /** Text before the signature in the header, e.g. "sha256=". */
  prefix: string;
}

export type Headers = Record<string, string | string[] | undefined>;

function header(headers: Headers, name: string): string {
  const value = headers[name];
  const single = Array.isArray(value) ? value[0] : value;
  if (single === undefined || single === '') throw new VerificationError('missing_header', `missing ${name} header`);
  return single;
}

function equal(a: Buffer, b: Buffer): boolean {
  return a.length === b.length && timingSafeEqual(a, b);
}

function hmac(secret: string, data: Buffer | string): Buffer {
  return createHmac('sha256', secret).update(data).digest();
}

function checkTimestamp(seconds: number, nowMs: number, name: string): void {
  if (Math.abs(nowMs / 1000 - seconds) > TOLERANCE_SECONDS) {
    throw new VerificationError(
      'stale_timestamp',
      `${name} is more than ${TOLERANCE_SECONDS} s away from the server's clock`,
    );
  }
}

async function github(body: Buffer, headers: Headers, secrets: string[]): Promise<void> {
  const signature = header(headers, 'x-hub-signature-256');
  if (!/^sha256=[0-9a-f]{64}$/.test(signature)) {
    throw new VerificationError('bad_format', 'x-hub-signature-256 must be "sha256=" and 64 lower-case hex digits');
  }
  // The library signs a string; the body was checked to be UTF-8, so the string is these exact bytes.
  const text = body.toString('utf8');
  for (const secret of secrets) {
    if (await verifyGithub(secret, text, signature)) return;
  }
  throw new VerificationError('no_matching_signature', 'x-hub-signature-256 matches no active secret');
}

function stripe(body: Buffer, headers: Headers, secrets: string[], nowMs: number): void {
  const value = header(headers, 'stripe-signature');
  let timestamp: string | undefined;
  const signatures: Buffer[] = [];
  for (const part of value.split(',')) {
    const [key, val] = part.split('=', 2).map((s) => s.trim());
    if (key === 't') timestamp = val;
    else if (key === 'v1' && val && /^[0-9a-f]{64}$/i.test(val)) signatures.push(Buffer.from(val, 'hex'));
  }
  if (!timestamp || !/^\d{1,12}$/.test(timestamp)) {
    throw new VerificationError('bad_format', 'stripe-signature has no t=<unix seconds> element');
  }
  if (signatures.length === 0) {
    throw new VerificationError('bad_format', 'stripe-signature has no v1=<64 hex digits> element');
  }
  checkTimestamp(Number(timestamp), nowMs, 'stripe-signature t');
  const prefix = Buffer.from(`${timestamp}.`);
  for (const secret of secrets) {
    const expected = createHmac('sha256', secret).update(prefix).update(body).digest();
    if (signatures.some((s) => equal(s, expected))) return;
  }
  throw new VerificationError('no_matching_signature', 'no v1 signature in stripe-signature matches an active secret');
}

function standardWebhooks(body: Buffer, headers: Headers, secrets: string[], nowMs: number): void {
  const id = header(headers, 'webhook-id');
  const timestamp = header(headers, 'webhook-timestamp');
  const signature = header(headers, 'webhook-signature');
  if (!/^\d{1,12}$/.test(timestamp))
    throw new VerificationError('bad_format', 'webhook-timestamp must be unix seconds');
  if (!signature.split(' ').some((s) => s.startsWith('v1,'))) {
    throw new VerificationError('bad_format', 'webhook-signature has no "v1,<base64>" entry');
  }
  // Checked here too so that the answer says "stale" whatever the library's own check order is.
  checkTimestamp(Number(timestamp), nowMs, 'webhook-timestamp');
  const relevant = { 'webhook-id': id, 'webhook-timestamp': timestamp, 'webhook-signature': signature };
  for (const secret of secrets) {
    try {
      new Webhook(secret).verify(body, relevant, { jsonParse: false });
      return;
    } catch (error) {
      if (!(error instanceof WebhookVerificationError)) throw error;
    }
  }
  throw new VerificationError('no_matching_signature', 'webhook-signature matches no active secret');
}

function plainHmac(body: Buffer, headers: Headers, secrets: string[], options: HmacOptions): void {
  const value = header(headers, options.header);
  if (!value.startsWith(options.prefix)) {
    throw new VerificationError('bad_format', `${options.header} must start with "${options.prefix}"`);
  }
  const encoded = value.slice(options.prefix.length);
  const valid = options.encoding === 'hex' ? /^[0-9a-fA-F]{64}$/ : /^[A-Za-z0-9+/]{43}=$/;
  if (!valid.test(encoded)) {
    throw new VerificationError('bad_format', `${options.header} must carry a ${options.encoding} HMAC-SHA256`);
  }
  const signature = Buffer.from(encoded, options.encoding);
  for (const secret of secrets) {
    if (equal(signature, hmac(secret, body))) return;
  }
  throw new VerificationError('no_matching_signature', `${options.header} matches no active secret`);
}

export interface VerifyInput {
  scheme: Scheme;
  body: Buffer;
  headers: Headers;
  secrets: string[];
  hmac?: HmacOptions;
  nowMs?: number;
}

/** Resolves when one active secret verifies the delivery; throws VerificationError otherwise. */
export async function verifySignature(input: VerifyInput): Promise<void> {
  const nowMs = input.nowMs ?? Date.now();
  switch (input.scheme) {
    case 'github':
      return github(input.body, input.headers, input.secrets);
    case 'stripe':
      return stripe(input.body, input.headers, input.secrets, nowMs);
    case 'standard-webhooks':
      return standardWebhooks(input.body, input.headers, input.secrets, nowMs);
    case 'hmac':
      if (!input.hmac) throw new Error('hmac scheme needs its header options');
      return plainHmac(input.body, input.headers, input.secrets, input.hmac);
  }
}
