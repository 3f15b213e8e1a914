import { msOfDay, utcDate } from './event.ts';

/**
 * One JSON line written as UTF-8 bytes, field by field, into a reused buffer: no string is built per
 * value. Building each bronze line from strings (JSON.stringify per field, template literals, ISO
 * times) allocated about 2.5 KB of garbage per 1 KB record, a third of all the sink allocated.
 */
export class JsonLine {
  private buffer = Buffer.allocUnsafe(16 * 1024);
  private at = 0;

  /** Starts a new line that needs at most `bound` bytes. */
  start(bound: number): void {
    if (bound > this.buffer.length) this.buffer = Buffer.allocUnsafe(Math.max(bound, this.buffer.length * 2));
    this.at = 0;
  }

  /** Bytes of the line so far. */
  get length(): number {
    return this.at;
  }

  /** Appends the line so far to `chunks` (no view of it is made: one per line added up). */
  copyTo(chunks: ByteChunks): void {
    chunks.append(this.buffer, this.at);
  }

  /** ASCII text that JSON would not escape (field names, punctuation, digits). */
  ascii(text: string): void {
    const { buffer } = this;
    let at = this.at;
    for (let i = 0; i < text.length; i++) buffer[at++] = text.charCodeAt(i);
    this.at = at;
  }

  /** Text as UTF-8, as is (e.g. a payload that already is JSON text). */
  utf8(text: string): void {
    this.at += this.buffer.write(text, this.at, 'utf8');
  }

  /** Bytes as they are (e.g. a payload's UTF-8 JSON text). */
  raw(bytes: Buffer): void {
    this.at += bytes.copy(this.buffer, this.at);
  }

  /** ASCII `before` (a field name, punctuation), then `text` as a JSON string. */
  stringField(before: string, text: string): void {
    this.ascii(before);
    this.string(text);
  }

  /** ASCII `before`, then an ISO time (see isoTime). */
  timeField(before: string, ms: number): void {
    this.ascii(before);
    this.isoTime(ms);
  }

  /** A JSON string literal, byte for byte what JSON.stringify writes. */
  string(text: string): void {
    const { buffer } = this;
    let at = this.at;
    buffer[at++] = 0x22;
    for (let i = 0; i < text.length; i++) {
      const c = text.charCodeAt(i);
      // Anything but printable ASCII (escapes, non-ASCII, surrogates): JSON.stringify decides.
      if (c < 0x20 || c === 0x22 || c === 0x5c || c > 0x7e) {
        this.utf8(JSON.stringify(text));
        return;
      }
      buffer[at++] = c;
    }
    buffer[at++] = 0x22;
    this.at = at;
  }

  /** Epoch milliseconds, quoted, as `new Date(ms).toISOString()` writes them (years 0000-9999). */
  isoTime(ms: number): void {
    this.buffer[this.at++] = 0x22;
    this.ascii(utcDate(ms));
    const inDay = msOfDay(ms);
    const seconds = Math.floor(inDay / 1000);
    const { buffer } = this;
    let at = this.at;
    buffer[at++] = 0x54; // T
    at = digits(buffer, at, Math.floor(seconds / 3600), 2);
    buffer[at++] = 0x3a; // :
    at = digits(buffer, at, Math.floor(seconds / 60) % 60, 2);
    buffer[at++] = 0x3a;
    at = digits(buffer, at, seconds % 60, 2);
    buffer[at++] = 0x2e; // .
    at = digits(buffer, at, inDay % 1000, 3);
    buffer[at++] = 0x5a; // Z
    buffer[at++] = 0x22;
    this.at = at;
  }
}

function digits(buffer: Buffer, at: number, value: number, width: number): number {
  for (let i = width - 1; i >= 0; i--) {
    buffer[at + i] = 0x30 + (value % 10);
    value = Math.floor(value / 10);
  }
  return at + width;
}

/** Bytes that JsonLine.string may write for `text` at most (each UTF-16 unit as \uXXXX). */
export function jsonStringBound(text: string): number {
  return text.length * 6 + 2;
}

/**
 * Lines appended into chunks that grow with the file (16 KiB to 1 MiB): a file of one short line
 * holds little memory, a large one few chunks. One copy per line; the file is written from the chunks.
 */
export class ByteChunks {
  private readonly full: Buffer[] = [];
  private chunk = Buffer.allocUnsafe(16 * 1024);
  private at = 0;
  length = 0;

  /** Appends `data`'s first `end` bytes. */
  append(data: Buffer, end: number): void {
    let from = 0;
    while (from < end) {
      if (this.at === this.chunk.length) {
        this.full.push(this.chunk);
        this.chunk = Buffer.allocUnsafe(Math.min(1024 * 1024, Math.max(this.chunk.length, this.length)));
        this.at = 0;
      }
      const copied = data.copy(this.chunk, this.at, from, end);
      this.at += copied;
      from += copied;
    }
    this.length += end;
  }

  /** The bytes as they are held (no copy of the whole; a file is written from these with one write each). */
  toChunks(): Buffer[] {
    return [...this.full, this.chunk.subarray(0, this.at)];
  }
}
