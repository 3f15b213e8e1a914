/**
 * The last `size` distinct keys added, first in first out. A ring of keys beside a Set keeps both add
 * and evict O(1); evicting a Map's oldest entry through keys().next() walks over the holes earlier
 * deletions left, which profiled as the single largest function of the batch path.
 */
export class SeenCache {
  private readonly keys = new Set<string>();
  private readonly ring: string[] = [];
  private next = 0;

  constructor(private readonly size: number) {}

  get empty(): boolean {
    return this.keys.size === 0;
  }

  has(key: string): boolean {
    return this.keys.has(key);
  }

  add(key: string): void {
    if (this.size === 0 || this.keys.has(key)) return;
    if (this.ring.length < this.size) this.ring.push(key);
    else {
      this.keys.delete(this.ring[this.next]!);
      this.ring[this.next] = key;
      this.next = (this.next + 1) % this.size;
    }
    this.keys.add(key);
  }
}
