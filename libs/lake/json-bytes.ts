import { msOfDay, utcDate } from './event.ts';

const SECOND_TEXT_BYTES = 20;

/**
 * One JSON line written as UTF-8 bytes, field by field, straight into the chunk of the file it goes to
 * (ByteChunks.reserve): no string is built per value and no line is copied. Building each bronze line
 * from strings (JSON.stringify per field, template literals, ISO times) allocated about 2.5 KB of
 * garbage per 1 KB record, a third of all the sink allocated.
 */
export class JsonLine {
  private buffer: Buffer = Buffer.alloc(0);
  private begin = 0;
  private at = 0;
  /**
   * The ISO text (quote to seconds, 20 bytes) of recently written seconds, in 8 slots by a hash of the
   * second: records share seconds, and a line has up to three times, often of different days.
   */
  private readonly seconds = new Float64Array(8).fill(Number.NaN);
  private readonly secondTexts = Buffer.alloc(8 * SECOND_TEXT_BYTES);

  /** Starts a line of at most `bound` bytes at the end of `chunks`; `chunks.commit(line.length)` keeps it. */
  start(chunks: ByteChunks, bound: number): void {
    this.buffer = chunks.reserve(bound);
    this.begin = this.at = chunks.end;
  }

  /** Bytes of the line so far. */
  get length(): number {
    return this.at - this.begin;
  }

  /** The line so far (a view, valid until its chunks are written to again). */
  bytes(): Buffer {
    return this.buffer.subarray(this.begin, this.at);
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
    const second = Math.floor(ms / 1000);
    const slot = Math.imul(second, 0x9e3779b1) >>> 29;
    if (this.seconds[slot] !== second) this.formatSecond(second, slot);
    const { buffer } = this;
    const texts = this.secondTexts;
    let at = this.at;
    // A byte loop: Buffer.copy's fixed cost is several times that of 20 bytes.
    for (let from = slot * SECOND_TEXT_BYTES, end = from + SECOND_TEXT_BYTES; from < end; from++) {
      buffer[at++] = texts[from]!;
    }
    buffer[at++] = 0x2e; // .
    at = digits(buffer, at, ms - second * 1000, 3);
    buffer[at++] = 0x5a; // Z
    buffer[at++] = 0x22;
    this.at = at;
  }

  /** Keeps `"YYYY-MM-DDTHH:MM:SS` of a second in its slot. */
  private formatSecond(second: number, slot: number): void {
    const text = this.secondTexts;
    const at = slot * SECOND_TEXT_BYTES;
    text[at] = 0x22;
    text.write(utcDate(second * 1000), at + 1, 'latin1');
    const inDay = msOfDay(second * 1000) / 1000;
    text[at + 11] = 0x54; // T
    digits(text, at + 12, Math.floor(inDay / 3600), 2);
    text[at + 14] = 0x3a; // :
    digits(text, at + 15, Math.floor(inDay / 60) % 60, 2);
    text[at + 17] = 0x3a;
    digits(text, at + 18, inDay % 60, 2);
    this.seconds[slot] = second;
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
 * A file's bytes in chunks that grow with the file (16 KiB to 1 MiB): a file of one short line holds
 * little memory, a large one few chunks. Lines are written into them in place (reserve, then commit);
 * the file is written from the chunks.
 */
export class ByteChunks {
  private readonly full: Buffer[] = [];
  private chunk: Buffer = Buffer.allocUnsafe(16 * 1024);
  private at = 0;
  length = 0;

  /** Where the next bytes go in the chunk that `reserve` returns. */
  get end(): number {
    return this.at;
  }

  /** The current chunk, with room for `bound` more bytes from `end` (a new chunk if it has not). */
  reserve(bound: number): Buffer {
    if (this.chunk.length - this.at < bound) {
      if (this.at > 0) this.full.push(this.chunk.subarray(0, this.at));
      this.chunk = Buffer.allocUnsafe(Math.max(bound, Math.min(1024 * 1024, Math.max(this.chunk.length, this.length))));
      this.at = 0;
    }
    return this.chunk;
  }

  /** Keeps the `bytes` written from `end` into the reserved room. */
  commit(bytes: number): void {
    this.at += bytes;
    this.length += bytes;
  }

  /** Appends a copy of `data`. */
  append(data: Buffer): void {
    this.reserve(data.length);
    data.copy(this.chunk, this.at);
    this.commit(data.length);
  }

  /** The bytes as they are held (no copy of the whole; a file is written from these with one write each). */
  toChunks(): Buffer[] {
    return [...this.full, this.chunk.subarray(0, this.at)];
  }
}
