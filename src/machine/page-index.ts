import type { Page } from "./page.js";

/**
 * Memory's page look-up by page number (key = hi * 2^20 + (lo >>> 12), up to 2^52): an
 * open-addressing hash table (linear probing, deletion by backward shift) over a
 * Float64Array of keys. Kernel page numbers lie near 2^52, where a Map's get hashes a heap
 * number (≈ 23 ns here against ≈ 12 ns for small integers); this hashes the key's int32
 * halves and costs a few ns. It is Memory's `pages` (read as a ReadonlyMap; only Memory
 * writes to it). Iteration is in slot order, not mapping order, and must not overlap a
 * change (a deletion moves entries).
 */
export class PageIndex implements ReadonlyMap<number, Page> {
  /** Per slot: the page number, or -1 when empty. */
  private slotKeys: Float64Array;
  private slotVals: (Page | undefined)[];
  private mask: number;
  /** Pages held. */
  size = 0;

  constructor(capacity = 1024) {
    let cap = 16;
    while (cap < capacity) cap *= 2;
    this.slotKeys = new Float64Array(cap).fill(-1);
    this.slotVals = new Array<Page | undefined>(cap).fill(undefined);
    this.mask = cap - 1;
  }

  /** The page numbered `key`, if held. */
  get(key: number): Page | undefined {
    const ks = this.slotKeys, m = this.mask;
    let i = slotOf(key) & m;
    for (;;) {
      const k = ks[i];
      if (k === key) return this.slotVals[i];
      if (k === -1) return undefined;
      i = (i + 1) & m;
    }
  }

  /** Holds `p` as page `key` (replacing what was there). */
  set(key: number, p: Page): void {
    const ks = this.slotKeys, m = this.mask;
    let i = slotOf(key) & m;
    for (;;) {
      const k = ks[i];
      if (k === key) { this.slotVals[i] = p; return; }
      if (k === -1) break;
      i = (i + 1) & m;
    }
    ks[i] = key;
    this.slotVals[i] = p;
    if (++this.size * 2 > ks.length) this.rehash(ks.length * 2);
  }

  /**
   * The slot holding page `key`, or, when it is not held, -1 - the empty slot where it would
   * go (for `addAt`: a look-up and an insertion with one probe).
   */
  find(key: number): number {
    const ks = this.slotKeys, m = this.mask;
    let i = slotOf(key) & m;
    for (;;) {
      const k = ks[i];
      if (k === key) return i;
      if (k === -1) return -1 - i;
      i = (i + 1) & m;
    }
  }

  /** Holds `p` as page `key`, not held: `found` is what `find(key)` returned, with no change since. */
  addAt(found: number, key: number, p: Page): void {
    const i = -1 - found;
    this.slotKeys[i] = key;
    this.slotVals[i] = p;
    if (++this.size * 2 > this.slotKeys.length) this.rehash(this.slotKeys.length * 2);
  }

  /** Drops page `key`; whether it was held. */
  delete(key: number): boolean {
    return this.take(key) !== undefined;
  }

  /** Drops page `key` and returns it (undefined: not held): `get` and `delete` in one probe. */
  take(key: number): Page | undefined {
    const ks = this.slotKeys, vs = this.slotVals, m = this.mask;
    let i = slotOf(key) & m;
    for (;;) {
      const k = ks[i];
      if (k === key) break;
      if (k === -1) return undefined;
      i = (i + 1) & m;
    }
    const taken = vs[i];
    // backward shift: move up each later entry of the probe chain whose home slot does not
    // lie cyclically in (i, j], so that no chain has a hole before its key
    let j = i;
    for (;;) {
      j = (j + 1) & m;
      const k = ks[j];
      if (k === -1) break;
      const h = slotOf(k) & m;
      const stays = i <= j ? h > i && h <= j : h > i || h <= j;
      if (!stays) { ks[i] = k; vs[i] = vs[j]; i = j; }
    }
    ks[i] = -1;
    vs[i] = undefined;
    this.size--;
    return taken;
  }

  has(key: number): boolean {
    return this.get(key) !== undefined;
  }

  forEach(f: (p: Page, key: number, map: ReadonlyMap<number, Page>) => void, thisArg?: unknown): void {
    const ks = this.slotKeys, vs = this.slotVals;
    for (let i = 0; i < ks.length; i++) if (ks[i] !== -1) f.call(thisArg, vs[i] as Page, ks[i], this);
  }

  *entries(): IterableIterator<[number, Page]> {
    const ks = this.slotKeys, vs = this.slotVals;
    for (let i = 0; i < ks.length; i++) if (ks[i] !== -1) yield [ks[i], vs[i] as Page];
  }

  *keys(): IterableIterator<number> {
    const ks = this.slotKeys;
    for (let i = 0; i < ks.length; i++) if (ks[i] !== -1) yield ks[i];
  }

  *values(): IterableIterator<Page> {
    const ks = this.slotKeys, vs = this.slotVals;
    for (let i = 0; i < ks.length; i++) if (ks[i] !== -1) yield vs[i] as Page;
  }

  [Symbol.iterator](): IterableIterator<[number, Page]> {
    return this.entries();
  }

  /** Holds exactly the pages of `map`. */
  reset(map: ReadonlyMap<number, Page>): void {
    if (this.size > 0) { this.slotKeys.fill(-1); this.slotVals.fill(undefined); this.size = 0; }
    if (map.size * 2 > this.slotKeys.length) this.rehash(map.size * 4);
    for (const [k, p] of map) this.set(k, p);
  }

  private rehash(cap: number): void {
    const ks = this.slotKeys, vs = this.slotVals;
    let n = 16;
    while (n < cap) n *= 2;
    this.slotKeys = new Float64Array(n).fill(-1);
    this.slotVals = new Array<Page | undefined>(n).fill(undefined);
    this.mask = n - 1;
    this.size = 0;
    for (let i = 0; i < ks.length; i++) if (ks[i] !== -1) this.set(ks[i], vs[i] as Page);
  }
}

const INV20 = 1 / 1048576;

/**
 * The home slot (before masking) of page number `key` (< 2^52): its low 20 bits mixed with
 * the high half (the kernel's regions lie 4 GiB apart and more). (`key | 0` would be shorter
 * but measured slower here than this split.)
 */
export function slotOf(key: number): number {
  const h = Math.floor(key * INV20);
  const l = key - h * 1048576;
  return l ^ Math.imul(h | 0, 0x9e3779b1) ^ (h >>> 12);
}
