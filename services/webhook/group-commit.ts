import type { AppendResult, NewEvent } from '../../libs/outbox/index.ts';

interface Waiting {
  events: NewEvent[];
  resolve: (results: AppendResult[]) => void;
  reject: (error: unknown) => void;
}

/**
 * Group commit: while every connection is busy, requests that arrive are stored together by the next
 * free connection in one statement (one commit), and each request is answered once that commit is
 * done. A request's events are never split over two statements, so each request stays all-or-nothing;
 * when a combined statement fails, each of its requests is retried alone, so one bad request cannot
 * fail the others.
 */
export class GroupCommitter {
  private readonly queue: Waiting[] = [];
  private running = 0;

  constructor(
    private readonly store: (events: NewEvent[]) => Promise<AppendResult[]>,
    private readonly concurrency: number,
    private readonly maxEvents: number,
  ) {}

  /** True when every connection is busy and `maxWaiting` requests already wait for one. */
  saturated(maxWaiting: number): boolean {
    return this.running >= this.concurrency && this.queue.length >= maxWaiting;
  }

  submit(events: NewEvent[]): Promise<AppendResult[]> {
    return new Promise((resolve, reject) => {
      this.queue.push({ events, resolve, reject });
      this.drain();
    });
  }

  private drain(): void {
    while (this.running < this.concurrency && this.queue.length > 0) {
      const group = [this.queue.shift()!];
      let size = group[0]!.events.length;
      while (this.queue.length > 0 && size + this.queue[0]!.events.length <= this.maxEvents) {
        const next = this.queue.shift()!;
        size += next.events.length;
        group.push(next);
      }
      this.running++;
      void this.flush(group).finally(() => {
        this.running--;
        this.drain();
      });
    }
  }

  private async flush(group: Waiting[]): Promise<void> {
    if (group.length === 1) {
      const only = group[0]!;
      await this.store(only.events).then(only.resolve, only.reject);
      return;
    }
    let results: AppendResult[];
    try {
      results = await this.store(group.flatMap((w) => w.events));
    } catch {
      for (const w of group) await this.store(w.events).then(w.resolve, w.reject);
      return;
    }
    let offset = 0;
    for (const w of group) {
      w.resolve(results.slice(offset, offset + w.events.length));
      offset += w.events.length;
    }
  }
}
