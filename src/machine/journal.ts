import type { Page } from "./page.js";

/**
 * A write journal (undo log) for Memory: while one is attached (`mem.journal`), every write —
 * by a CPU, by delivery, by host code, by a loader — first records the old bytes, and every
 * mapping change records the page object it replaced. `mem.rollback(mark)` undoes everything
 * recorded after `mark`, newest first, and leaves the decode caches consistent. The check
 * engine keeps one machine per variant and undoes each case through this instead of
 * snapshot/restore; the entries are also exactly the addresses a run wrote, which is all a
 * diff between two runs from the same state has to look at.
 *
 * Storage is typed arrays grown on demand and reused: recording allocates nothing.
 */
export class Journal {
  /** Number of entries. */
  n = 0;
  /** Per entry: the page written (data entry), or the page object a mapping change replaced (undefined: none). */
  readonly pages: (Page | undefined)[] = [];
  /** Per entry: the page key (page number). */
  keys = new Float64Array(256);
  /** Per entry: offset in the page (data entries). */
  offs = new Int32Array(256);
  /** Per entry: bytes written (> 0), or 0 for a mapping change. */
  sizes = new Int32Array(256);
  /** Per entry: where its old bytes start in `old` (entries of more than 8 bytes). */
  at = new Int32Array(256);
  /** Per entry of at most 8 bytes: the old bytes as little-endian int32 halves. */
  vlo = new Int32Array(256);
  vhi = new Int32Array(256);
  /** The old bytes of entries longer than 8 bytes, entry after entry. */
  old = new Uint8Array(16384);
  /** Bytes used in `old`. */
  nb = 0;
  /**
   * Entries below this index may name page objects that were since replaced (a snapshot
   * made pages copy-on-write, a mapping changed): undo those by page key.
   */
  slowBelow = 0;
  /** The memory was restored from a snapshot: the entries no longer describe it. */
  broken = false;
  /** More entries than this break the journal (a long program run while attached). */
  limit = 1 << 18;

  /** The current position, to roll back to later. */
  mark(): number { return this.n; }

  /** Records the `size` bytes at `off` of `p` (page `key`) before they are overwritten. */
  record(p: Page, key: number, off: number, size: number): void {
    if (this.broken) return;
    const i = this.n;
    if (i === this.keys.length) this.grow();
    this.pages[i] = p;
    this.keys[i] = key;
    this.offs[i] = off;
    this.sizes[i] = size;
    const b = this.nb;
    this.at[i] = b;
    if (size === 8) { const dv = p.dv; this.vlo[i] = dv.getInt32(off, true); this.vhi[i] = dv.getInt32(off + 4, true); }
    else if (size === 4) this.vlo[i] = p.dv.getInt32(off, true);
    else if (size === 1) this.vlo[i] = p.data[off];
    else if (size === 2) this.vlo[i] = p.dv.getUint16(off, true);
    else if (size < 8) { let v = 0; for (let k = size - 1; k >= 0; k--) v = (v << 8) | p.data[off + k]; this.vlo[i] = v; }
    else {
      if (b + size > this.old.length) this.growBytes(b + size);
      this.old.set(p.data.subarray(off, off + size), b);
      this.nb = b + size;
    }
    this.n = i + 1;
    if (i >= this.limit) this.broken = true;
  }

  /** Byte k of entry i's old contents. */
  oldByte(i: number, k: number): number {
    if (this.sizes[i] > 8) return this.old[this.at[i] + k];
    return k < 4 ? (this.vlo[i] >>> (8 * k)) & 0xff : (this.vhi[i] >>> (8 * (k - 4))) & 0xff;
  }

  /** Records a mapping change of page `key`; `prev` is the page object it had (undefined: unmapped). */
  mapping(key: number, prev: Page | undefined): void {
    if (this.broken) return;
    const i = this.n;
    if (i === this.keys.length) this.grow();
    this.pages[i] = prev;
    this.keys[i] = key;
    this.offs[i] = 0;
    this.sizes[i] = 0;
    this.at[i] = this.nb;
    this.n = i + 1;
  }

  /** Page objects recorded so far may be replaced from now on (a snapshot or a remap). */
  pagesMayChange(): void {
    this.slowBelow = this.n; // every entry recorded so far may name a replaced object
  }

  /** Forgets every entry (the memory is taken as it is now). */
  clear(): void {
    this.n = 0;
    this.nb = 0;
    this.slowBelow = 0;
    this.broken = false;
    this.pages.length = 0;
  }

  private grow(): void {
    const n = this.keys.length * 2;
    const k = new Float64Array(n); k.set(this.keys); this.keys = k;
    const o = new Int32Array(n); o.set(this.offs); this.offs = o;
    const s = new Int32Array(n); s.set(this.sizes); this.sizes = s;
    const a = new Int32Array(n); a.set(this.at); this.at = a;
    const vl = new Int32Array(n); vl.set(this.vlo); this.vlo = vl;
    const vh = new Int32Array(n); vh.set(this.vhi); this.vhi = vh;
  }

  private growBytes(need: number): void {
    let n = this.old.length * 2;
    while (n < need) n *= 2;
    const o = new Uint8Array(n); o.set(this.old); this.old = o;
  }
}
