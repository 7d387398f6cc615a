/**
 * One CPU's stale view of code bytes (SDM Vol. 3A §8.1.3, cross-modifying code): for each
 * byte another CPU modified since this CPU last serialized, the value this CPU may still
 * fetch. A byte absent here is seen as memory holds it now. Views only move forward: a fetch
 * that sees the current value drops the entry; a serializing instruction or event drops all.
 * Keys are page numbers (address >> 12) and offsets, as in Memory.
 */
export class StaleView {
  private readonly pages = new Map<number, Map<number, number>>();
  private count = 0;

  get size(): number { return this.count; }

  /** The stale byte at page `key`, offset `off`, if any. */
  get(key: number, off: number): number | undefined {
    return this.pages.get(key)?.get(off);
  }

  /** Another CPU is about to overwrite the byte: keep the value this CPU may still see (the oldest). */
  keep(key: number, off: number, old: number): void {
    let p = this.pages.get(key);
    if (p === undefined) { p = new Map(); this.pages.set(key, p); }
    if (!p.has(off)) { p.set(off, old); this.count++; }
  }

  /** This CPU now sees the byte as memory holds it. */
  drop(key: number, off: number): void {
    const p = this.pages.get(key);
    if (p !== undefined && p.delete(off)) {
      this.count--;
      if (p.size === 0) this.pages.delete(key);
    }
  }

  /** True when some byte of [off, off+len) in page `key` (and the next page beyond 4096) is stale. */
  touches(key: number, off: number, len: number): boolean {
    const p = this.pages.get(key);
    if (p !== undefined) for (let k = off; k < off + len && k < 4096; k++) if (p.has(k)) return true;
    if (off + len > 4096) {
      const q = this.pages.get(key + 1);
      if (q !== undefined) for (let k = 0; k < off + len - 4096; k++) if (q.has(k)) return true;
    }
    return false;
  }

  /** A serializing instruction or event: every later fetch sees memory. */
  clear(): void {
    this.pages.clear();
    this.count = 0;
  }
}
