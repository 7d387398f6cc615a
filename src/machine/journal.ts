import type { Page } from "./page.js";
import { copyAligned, shortHi, shortLo } from "./page-bytes.js";

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
  /**
   * Per entry of at most 8 bytes: the old bytes as little-endian int32 halves. Longer entries
   * say in `vhi` where their old bytes are: 0 in `old` from `at`, 1 nowhere (they were zeros,
   * recordZero), 2 (3) in `old` from `at` as a run's 8-byte (4-byte) chunks in write order (extend).
   */
  vlo = new Int32Array(256);
  vhi = new Int32Array(256);
  /** The old bytes of entries longer than 8 bytes, entry after entry. */
  old = new Uint8Array(16384);
  /** `old` as int32 words (little-endian, as x86 and every platform Node runs on here): runs' chunks and every entry's `at` are word-aligned. */
  oldW = new Int32Array(this.old.buffer);
  /** Bytes used in `old`. */
  nb = 0;
  /**
   * Entries below this index may name page objects that were since replaced (a snapshot
   * made pages copy-on-write, a mapping changed): undo those by page key.
   */
  slowBelow = 0;
  /** Indices of the mapping-change entries, ascending (the first `nMaps`). */
  mapAt = new Int32Array(16);
  nMaps = 0;
  /** Indices of the zero-fill entries (recordZero), ascending (the first `nZeros`). */
  zeroAt = new Int32Array(16);
  nZeros = 0;
  /** The memory was restored from a snapshot (or the journal overflowed): the entries no longer describe it. */
  get broken(): boolean { return this.isBroken; }
  set broken(v: boolean) {
    this.isBroken = v;
    if (v) { this.tailPage = null; this.covPage = null; } // (record's inlined run extension checks only the tail; nothing is covered once broken)
  }
  private isBroken = false;
  /** More entries than this break the journal (a long program run while attached). */
  limit = 1 << 18;

  /**
   * The last entry when a write of `tailW` bytes (4 or 8) just below it may extend it (see
   * `record`): its page, key and lowest offset, and whether it is a run already; tailPage is
   * null when none may (another kind of entry came after it, a mark, a truncation, a page change).
   */
  private tailPage: Page | null = null;
  /** The tail's page number as its int32 parts (lo >>> 12, hi), as Memory's writes have it. */
  private tailPn = 0;
  private tailHi = 0;
  private tailOff = 0;
  private tailW = 0;
  private tailRun = 0; // (1: the tail is a run already; a number, not a boolean: cheaper to test in V8)
  /** `old.length`, kept as a number. */
  private oldCap = 16384;

  /**
   * Bytes [covLo, covHi) of page object covPage (null: none) are all written by entries
   * recorded since the last mark (a contiguous part of their union, grown as entries come
   * in): a later write wholly inside needs no entry of its own — rolling back to any mark
   * restores its bytes through the older entry, whose old bytes are the first ones (the
   * meaning journal-meaning.ts states), and the set of written bytes stays the same. Such
   * writes are common in a check: do_int3's stores into pt_regs and the frame, made after
   * the pushes that wrote them first (three of a 64-bit check's eight emulated-run entries).
   * Reset wherever a position may be taken or entries go (mark, truncate, pagesMayChange,
   * mapping, clear, broken).
   */
  private covPage: Page | null = null;
  private covLo = 0;
  private covHi = 0;

  /** The current position, to roll back to later (take marks here: writes after it stay after it). */
  mark(): number { this.tailPage = null; this.covPage = null; return this.n; }

  /**
   * Records the `size` bytes at `off` of `p` (page `key`) before they are overwritten.
   * A write of 8 (or 4) bytes just below the last entry's writes of that size on the same
   * page — a stack growing down: pushes, a frame — extends that entry (a "run", see `vhi`)
   * instead of adding one, unless a mark lies between them.
   */
  record(p: Page, key: number, off: number, size: number): void {
    if (p === this.tailPage && size === this.tailW && off + size === this.tailOff && key - Math.floor(key / 1048576) * 1048576 === this.tailPn && (Math.floor(key / 1048576) | 0) === this.tailHi) this.extend(p, off, size);
    else this.add(p, key, off, size);
  }

  /**
   * `record` for a write at the address (lo, hi) (int32 halves; `off` is its page offset):
   * small, so that V8 inlines it into Memory's writes — a push extends the run, the rest goes
   * out of line.
   */
  recordAt(p: Page, lo: number, hi: number, off: number, size: number): void {
    if (p === this.tailPage && size === this.tailW && off + size === this.tailOff && lo >>> 12 === this.tailPn && (hi | 0) === this.tailHi) this.extend(p, off, size);
    else this.add(p, (hi >>> 0) * 1048576 + (lo >>> 12), off, size);
  }

  /**
   * Records `k` stack pushes of `w` bytes (8 or 4) at off + w·(k − 1), …, off of `p` (the
   * address of `off` is (lo, hi)), top down, before any of them is made — what k recordAt
   * calls would record, in meaning: they extend the tail when it lies just above (one run),
   * else start a run of their own that later pushes extend. The old bytes are the caller's
   * to copy, each word just before its push overwrites it: the word at off + w·(k − 1 − t)
   * goes to oldW from the returned word index + t·w/4 (read `oldW` after this call: it may
   * grow). Returns -1 when there is nothing to copy (the journal is broken, or a new entry of
   * 8 bytes or less, whose old bytes this call took itself). For stores that go straight to
   * the page a few words at a time (64-bit delivery's frame, deliver.ts): one call where k
   * recordAt calls would each look at the tail, and a run the stub's pushes then extend.
   */
  reserveDown(p: Page, lo: number, hi: number, off: number, w: number, k: number): number {
    const size = w * k;
    if (p === this.tailPage && w === this.tailW && off + size === this.tailOff && lo >>> 12 === this.tailPn && (hi | 0) === this.tailHi) {
      const q = this.n - 1;
      // (one 4-byte push below a 4-byte entry: the plain 8-byte entry extend makes — a run is
      // longer than 8 bytes; extend takes the old bytes itself)
      if (size + this.sizes[q] <= 8) { this.extend(p, off, w); return -1; }
      let b = this.nb;
      if (b + size + 8 > this.oldCap) this.growBytes(b + size + 8);
      if (this.tailRun === 0) b += 4 * this.tailToRun(q, w, b >> 2);
      this.offs[q] = off;
      this.sizes[q] += size;
      this.nb = b + size;
      this.tailOff = off;
      if (p === this.covPage && off + size === this.covLo) this.covLo = off;
      return b >> 2;
    }
    if (this.broken) return -1;
    const key = (hi >>> 0) * 1048576 + (lo >>> 12);
    if (size <= 8) { this.add(p, key, off, size); return -1; }
    const b = this.nb;
    if (b + size > this.oldCap) this.growBytes(b + size);
    const i = this.entry(p, key, off, size);
    this.vhi[i] = w === 8 ? 2 : 3; // (a run from the start: chunks in write order, see extend)
    this.nb = b + size;
    this.tailPage = p; this.tailPn = lo >>> 12; this.tailHi = hi | 0; this.tailOff = off; this.tailW = w; this.tailRun = 1;
    this.cover(p, off, size);
    this.n = i + 1;
    if (i >= this.limit) this.broken = true;
    return b >> 2;
  }

  /** A new entry for `record` (nothing once broken, or when the bytes are covered: see covPage). */
  private add(p: Page, key: number, off: number, size: number): void {
    if (p === this.covPage && off >= this.covLo && off + size <= this.covHi) return; // (written since the last mark: see covPage)
    if (this.broken) return;
    this.cover(p, off, size);
    const b = this.nb;
    const i = this.entry(p, key, off, size);
    if (size === 8 || size === 4) {
      const dv = p.dv;
      this.vlo[i] = dv.getInt32(off, true);
      if (size === 8) this.vhi[i] = dv.getInt32(off + 4, true);
      // (not below slowBelow: it is i itself, so the page object is current)
      this.tailPage = p; const h = Math.floor(key / 1048576); this.tailPn = key - h * 1048576; this.tailHi = h | 0; this.tailOff = off; this.tailW = size; this.tailRun = 0; // (not key % 2^20: a float remainder, slow)
    } else {
      this.tailPage = null;
      if (size === 1) this.vlo[i] = p.data[off];
      else if (size === 2) this.vlo[i] = p.dv.getUint16(off, true);
      else if (size < 8) {
        // bytes 0–3 in vlo, 4–6 in vhi (as oldByte reads them)
        this.vlo[i] = shortLo(p.data, off, size); this.vhi[i] = shortHi(p.data, off, size);
      }
      else {
        this.vhi[i] = 0; // (1: the old bytes were zeros and are not kept, see recordZero; 2 and 3: a run, see extend)
        if (b + size > this.oldCap) this.growBytes(b + size);
        const o = this.old, d = p.data;
        if ((off & 3) === 0) copyAligned(d, p.i32, off, o, this.oldW, b, size); // (b is word-aligned; words where a byte loop went, see page-bytes.ts)
        else if (size <= 64) for (let k = 0; k < size; k++) o[b + k] = d[off + k]; // (cheaper than a subarray view)
        else o.set(d.subarray(off, off + size), b);
        this.nb = (b + size + 3) & ~3; // (runs keep their chunks on word boundaries)
      }
    }
    this.n = i + 1;
    if (i >= this.limit) this.broken = true;
  }

  /**
   * Extends the last entry (the tail, starting at off + w) down to `off` by a write of
   * `w` bytes (its tailW). While the entry is at most 8 bytes it stays a plain one (old bytes
   * in vlo/vhi: two 4-byte writes make an 8-byte entry); past that it is a run, which keeps
   * its old bytes in `old` as w-byte chunks in write order (chunk c covers the page bytes
   * [top - w·c, top - w·c + w), top = off + size - w), ending at `nb`; `vhi` says 2 for
   * 8-byte chunks, 3 for 4-byte ones.
   */
  private extend(p: Page, off: number, w: number): void {
    const q = this.n - 1, dv = p.dv;
    if (p === this.covPage && off + w === this.covLo) this.covLo = off;
    if (w === 4 && this.sizes[q] === 4) {
      // two 4-byte writes: an 8-byte entry, the first write's old bytes the upper half
      this.vhi[q] = this.vlo[q];
      this.vlo[q] = dv.getInt32(off, true);
      this.offs[q] = off;
      this.sizes[q] = 8;
      this.tailOff = off;
      return;
    }
    const b = this.nb;
    if (b + 16 > this.oldCap) this.growBytes(b + 16);
    const o = this.oldW;
    let c = b >> 2; // (b is word-aligned)
    if (this.tailRun === 0) c += this.tailToRun(q, w, c); // (at[q] is b)
    o[c] = dv.getInt32(off, true);
    if (w === 8) o[c + 1] = dv.getInt32(off + 4, true);
    this.offs[q] = off;
    this.sizes[q] += w;
    this.nb = 4 * c + w;
    this.tailOff = off;
  }

  /**
   * Makes the tail entry `q` — a plain one of 8 bytes, or (reserveDown) a single 4-byte one —
   * a run of `w`-byte chunks: its own old bytes become the first chunks, upper chunk first,
   * at word `c` of oldW (where its `at` points: nothing was stored after it), and vhi says the
   * chunk width. Returns the words it wrote.
   */
  private tailToRun(q: number, w: number, c: number): number {
    const o = this.oldW;
    this.tailRun = 1;
    if (this.sizes[q] === 8) {
      if (w === 8) { o[c] = this.vlo[q]; o[c + 1] = this.vhi[q]; this.vhi[q] = 2; }
      else { o[c] = this.vhi[q]; o[c + 1] = this.vlo[q]; this.vhi[q] = 3; }
      return 2;
    }
    o[c] = this.vlo[q]; this.vhi[q] = 3;
    return 1;
  }

  /** Puts a run's old bytes (entry i, vhi 2 or 3) back into the page's `dv`. */
  undoRun(i: number, dv: DataView): void {
    const o = this.oldW, off = this.offs[i];
    let c = this.at[i] >> 2;
    if (this.vhi[i] === 2) {
      for (let t = off + this.sizes[i] - 8; t >= off; c += 2, t -= 8) {
        dv.setInt32(t, o[c], true);
        dv.setInt32(t + 4, o[c + 1], true);
      }
    } else {
      for (let t = off + this.sizes[i] - 4; t >= off; c++, t -= 4) dv.setInt32(t, o[c], true);
    }
  }

  /**
   * `record` for `size` bytes the caller knows are all zero: the old bytes are not copied
   * (undo writes zeros). Only for what is known, not checked here.
   */
  recordZero(p: Page, key: number, off: number, size: number): void {
    if (size <= 8 || this.broken) { this.record(p, key, off, size); return; }
    const i = this.entry(p, key, off, size);
    this.vhi[i] = 1;
    this.tailPage = null;
    this.cover(p, off, size);
    if (this.nZeros === this.zeroAt.length) { const a = new Int32Array(2 * this.nZeros); a.set(this.zeroAt); this.zeroAt = a; }
    this.zeroAt[this.nZeros++] = i;
    this.n = i + 1;
    if (i >= this.limit) this.broken = true;
  }

  /**
   * A new entry wrote [off, off + size) of `p`: joins the cover when it touches it, else becomes
   * it. (Protected: properties/journal-cover.test.ts overrides it with nothing — every write
   * then takes an entry, the general path — where a flag tested here cost ≈ 260 host
   * instructions a check, callgrind.)
   */
  protected cover(p: Page, off: number, size: number): void {
    const end = off + size;
    if (p === this.covPage && off <= this.covHi && end >= this.covLo) {
      if (off < this.covLo) this.covLo = off;
      if (end > this.covHi) this.covHi = end;
    } else { this.covPage = p; this.covLo = off; this.covHi = end; }
  }

  /** Byte k of entry i's old contents. */
  oldByte(i: number, k: number): number {
    const size = this.sizes[i];
    if (size > 8) {
      const f = this.vhi[i];
      if (f === 0) return this.old[this.at[i] + k];
      if (f === 1) return 0;
      if (f === 2) return this.old[this.at[i] + size - 8 - (k & ~7) + (k & 7)]; // a run: byte k is in chunk (size - 8 - (k & ~7)) / 8
      return this.old[this.at[i] + size - 4 - (k & ~3) + (k & 3)]; // (4-byte chunks)
    }
    return k < 4 ? (this.vlo[i] >>> (8 * k)) & 0xff : (this.vhi[i] >>> (8 * (k - 4))) & 0xff;
  }

  /** Entry n, the next, for `size` bytes at `off` of page `key` (object `p`), its old bytes to go at `nb`; the caller fills in the rest and bumps n. */
  private entry(p: Page | undefined, key: number, off: number, size: number): number {
    const i = this.n;
    if (i === this.keys.length) this.grow();
    this.pages[i] = p;
    this.keys[i] = key;
    this.offs[i] = off;
    this.sizes[i] = size;
    this.at[i] = this.nb;
    return i;
  }

  /**
   * Records a mapping change of page `key`; `prev` is the page object it had (undefined: none).
   * `laid` > 0 (with `prev` undefined): the page was mapped fresh with `laid` bytes put at
   * `off` at once (Memory.mapFresh): undoing the mapping zeroes them before the page goes back
   * to the spare pages (its offs/vlo; a plain mapping has vlo 0).
   */
  mapping(key: number, prev: Page | undefined, off = 0, laid = 0): void {
    if (this.broken) return;
    const i = this.entry(prev, key, off, 0);
    this.vlo[i] = laid;
    this.tailPage = null;
    this.covPage = null;
    if (this.nMaps === this.mapAt.length) { const a = new Int32Array(2 * this.nMaps); a.set(this.mapAt); this.mapAt = a; }
    this.mapAt[this.nMaps++] = i;
    this.n = i + 1;
  }

  /** Whether an entry in [from, to) is a mapping change. */
  mapsIn(from: number, to: number): boolean {
    const a = this.mapAt;
    for (let q = this.nMaps - 1; q >= 0 && a[q] >= from; q--) if (a[q] < to) return true;
    return false;
  }

  /** Drops the entries from `mark` on (after they were undone). */
  truncate(mark: number): void {
    if (mark >= this.n) return;
    this.tailPage = null;
    this.covPage = null;
    this.nb = this.at[mark];
    this.n = mark;
    while (this.nMaps > 0 && this.mapAt[this.nMaps - 1] >= mark) this.nMaps--;
    while (this.nZeros > 0 && this.zeroAt[this.nZeros - 1] >= mark) this.nZeros--;
  }

  /** Page objects recorded so far may be replaced from now on (a snapshot or a remap). */
  pagesMayChange(): void {
    this.slowBelow = this.n; // every entry recorded so far may name a replaced object
    this.tailPage = null;
    this.covPage = null;
  }

  /** Forgets every entry (the memory is taken as it is now). */
  clear(): void {
    this.n = 0;
    this.nb = 0;
    this.nMaps = 0;
    this.nZeros = 0;
    this.tailPage = null;
    this.covPage = null;
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
    const o = new Uint8Array(n); o.set(this.old); this.old = o; this.oldW = new Int32Array(o.buffer); this.oldCap = n;
  }
}
