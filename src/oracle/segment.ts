import type { Journal } from "../machine/journal.js";
import type { Memory } from "../machine/memory.js";
import type { MemoryDiff } from "../machine/state.js";
import type { Page } from "../machine/page.js";
import { putShort, shortHi, shortLo } from "../machine/page-bytes.js";

/**
 * What a stretch of journal entries left in memory: per entry its page, offset and size and
 * the bytes there *now* (the final values, not the old ones), or for a mapping change the
 * page's permissions now (-1: unmapped). Enough to rebuild the memory it describes on top of
 * the state it started from, and to compare two runs from the same state address by address.
 */
export interface Segment {
  readonly n: number;
  readonly keys: Float64Array;
  readonly offs: Int32Array;
  /** Bytes (> 0), or 0 for a mapping change. */
  readonly sizes: Int32Array;
  /** Entries of more than 8 bytes: the start of their bytes in `bytes`; a mapping change: the permissions (-1: unmapped). */
  readonly at: Int32Array;
  /**
   * Entries of 1–8 bytes: their bytes as little-endian int32 halves, bytes 0–3 in `lo`, 4–7
   * in `hi`, zero past the entry's size (two words to read and compare, not eight bytes: a
   * typed-array access costs a handful of host instructions in this V8).
   */
  readonly lo: Int32Array;
  readonly hi: Int32Array;
  readonly bytes: Uint8Array;
}

/** Byte k of entry i of `s`. */
export function segByte(s: Segment, i: number, k: number): number {
  if (s.sizes[i] > 8) return s.bytes[s.at[i] + k];
  return k < 4 ? (s.lo[i] >>> (8 * k)) & 0xff : (s.hi[i] >>> (8 * (k - 4))) & 0xff;
}

/** The bytes of data entry i of `s` (a copy). */
export function segBytes(s: Segment, i: number): Uint8Array {
  const out = new Uint8Array(s.sizes[i]);
  for (let k = 0; k < out.length; k++) out[k] = segByte(s, i, k);
  return out;
}

/** A Segment in reusable, growing buffers (the engine keeps a few: capturing allocates nothing). */
export class SegmentBuffer implements Segment {
  n = 0;
  keys = new Float64Array(64);
  offs = new Int32Array(64);
  sizes = new Int32Array(64);
  at = new Int32Array(64);
  lo = new Int32Array(64);
  hi = new Int32Array(64);
  bytes = new Uint8Array(4096);

  /** Fills this with journal entries [from, j.n) and the current contents of what they wrote. */
  capture(mem: Memory, j: Journal, from: number): this {
    const n = j.n - from;
    if (n > this.keys.length) this.grow(n);
    let nb = 0;
    for (let e = from; e < j.n; e++) if (j.sizes[e] > 8) nb += j.sizes[e];
    if (nb > this.bytes.length) this.bytes = new Uint8Array(Math.max(nb, 2 * this.bytes.length));
    const keys = this.keys, offs = this.offs, sizes = this.sizes, at = this.at, bytes = this.bytes;
    let b = 0;
    for (let i = 0; i < n; i++) {
      const e = from + i, size = j.sizes[e], key = j.keys[e], off = j.offs[e];
      keys[i] = key; offs[i] = off; sizes[i] = size;
      if (size === 0) {
        const cur = mem.pageAt(key);
        at[i] = cur === undefined ? -1 : cur.perm;
        continue;
      }
      const p = e >= j.slowBelow ? j.pages[e] : mem.pageAt(key);
      if (size <= 8) {
        if (p === undefined) { this.lo[i] = 0; this.hi[i] = 0; }
        else { readHalves(p, off, size); this.lo[i] = HALF_LO; this.hi[i] = HALF_HI; }
        continue;
      }
      at[i] = b;
      if (p !== undefined) {
        const d = p.data;
        if (size <= 64) for (let k = 0; k < size; k++) bytes[b + k] = d[off + k];
        else bytes.set(d.subarray(off, off + size), b);
      }
      b += size;
    }
    this.n = n;
    return this;
  }

  /**
   * capture(mem, j, from) followed by mem.rollback(from), in one go, when that is only
   * putting old bytes back: every entry from `from` on is a write of at most 8 bytes
   * (no mapping change, no zero fill), recorded on the page object memory holds now
   * (from >= j.slowBelow) and on a page without decoded code (nothing to invalidate) —
   * a run's stack pushes and data stores. Then Memory.rollback does nothing else either
   * (no page recycled or remapped, no TLB slot dropped, no generation bumped). Returns
   * false, having changed nothing but this buffer's contents, otherwise (the caller then
   * takes the general path).
   */
  take(mem: Memory, j: Journal, from: number): boolean {
    const end = j.n, n = end - from;
    if (mem.journal !== j || j.broken || from < j.slowBelow || n > this.keys.length) return false;
    // (every array in a local: a typed-array access through a field reloads the field too)
    const pages = j.pages, sizes = j.sizes, offs = j.offs, keys = j.keys;
    const sk = this.keys, so = this.offs, ss = this.sizes, sl = this.lo, sh = this.hi;
    // the final bytes first, oldest entry first (entries may overlap: each sees them all)
    for (let i = 0, e = from; e < end; i++, e++) {
      const size = sizes[e], p = pages[e];
      // (`=== true`: a boolean field's truthiness is tested in full in this V8)
      if (size === 0 || size > 8 || p === undefined || p.code !== null || p.crossIn === true) return false;
      const off = offs[e];
      sk[i] = keys[e]; so[i] = off; ss[i] = size;
      if (size === 8 && (off & 3) === 0) { const w = p.i32, q = off >> 2; sl[i] = w[q]; sh[i] = w[q + 1]; }
      else { readHalves(p, off, size); sl[i] = HALF_LO; sh[i] = HALF_HI; }
    }
    // then the old bytes back, newest entry first (Memory.rollback's undo of short entries)
    const vlo = j.vlo, vhi = j.vhi;
    for (let e = end - 1; e >= from; e--) {
      const size = sizes[e], off = offs[e], p = pages[e] as Page;
      // (a word store, the common entry, without loading the page's other views for putShort)
      if (size === 8 && (off & 3) === 0) { const w = p.i32, q = off >> 2; w[q] = vlo[e]; w[q + 1] = vhi[e]; }
      else putShort(p.data, p.i32, p.dv, off, size, vlo[e], vhi[e]);
    }
    j.truncate(from);
    this.n = n;
    return true;
  }

  private grow(n: number): void {
    const m = Math.max(n, 2 * this.keys.length);
    this.keys = new Float64Array(m); this.offs = new Int32Array(m); this.sizes = new Int32Array(m); this.at = new Int32Array(m);
    this.lo = new Int32Array(m); this.hi = new Int32Array(m);
  }
}

/** readHalves' result. */
let HALF_LO = 0, HALF_HI = 0;

/** The `size` (1–8) bytes at `off` of `p` as little-endian halves into HALF_LO/HALF_HI, zero past `size` (within the page: a journal entry is). */
function readHalves(p: Page, off: number, size: number): void {
  if (size === 8 && (off & 3) === 0) { HALF_LO = p.i32[off >> 2]; HALF_HI = p.i32[(off >> 2) + 1]; return; }
  if (size === 4 && (off & 3) === 0) { HALF_LO = p.i32[off >> 2]; HALF_HI = 0; return; }
  HALF_LO = shortLo(p.data, off, size); HALF_HI = shortHi(p.data, off, size);
}

/** Whether the `size` (1–8) bytes at `off` of `p` are, as readHalves gives them, (lo, hi). */
function holdsHalves(p: Page, off: number, size: number, lo: number, hi: number): boolean {
  readHalves(p, off, size);
  return HALF_LO === lo && HALF_HI === hi;
}

/** Whether a segment changed a mapping (then only a whole-memory diff is exact). */
export function remaps(s: Segment): boolean {
  for (let i = 0; i < s.n; i++) if (s.sizes[i] === 0) return true;
  return false;
}

/**
 * Byte ranges to leave out of a diff, as (page key, offset) pairs so that no BigInt is
 * needed: four numbers per range [k0, o0, k1, o1) for [start, end).
 */
export type KeyRanges = number[];

/** Whether bytes off..last of page `key` lie inside the range [k0:o0, k1:o1) (covered's test for one range). */
function inside(key: number, off: number, last: number, k0: number, o0: number, k1: number, o1: number): boolean {
  return (key > k0 || (key === k0 && off >= o0)) && (key < k1 || (key === k1 && last < o1));
}

/** Whether [off, off + size) of page `key` lies inside one of the ranges. */
function covered(r: KeyRanges, key: number, off: number, size: number): boolean {
  const last = off + size - 1;
  for (let i = 0; i < r.length; i += 4) {
    const k0 = r[i], o0 = r[i + 1], k1 = r[i + 2], o1 = r[i + 3];
    if ((key > k0 || (key === k0 && off >= o0)) && (key < k1 || (key === k1 && last < o1))) return true;
  }
  return false;
}

/** Whether `s` wrote the byte at (key, off). */
function wrote(s: Segment, key: number, off: number): boolean {
  for (let i = 0; i < s.n; i++) {
    const o = s.offs[i];
    if (s.keys[i] === key && off >= o && off < o + s.sizes[i]) return true;
  }
  return false;
}

/**
 * Differences in memory between two runs from the same state S, taken while memory holds the
 * second run's final state and the journal's entries [from, to) are that run's writes (their
 * old bytes are S): `real` is what the first run wrote, captured after it. Only bytes a run
 * wrote can differ, so only they are looked at — a byte the first run wrote against memory
 * now, a byte only the second wrote against S — and a write anywhere is seen (the journal
 * sees every write). Byte runs as diffMemory gives them (first run's bytes, then the
 * second's), ascending.
 */
export function diffRuns(mem: Memory, j: Journal, real: Segment, from: number, to: number, ignore: KeyRanges): MemoryDiff[] {
  let hits: [number, number, number, number][] | null = null;
  // Two ranges (the engine's: the dead stack, the site's byte) checked inline from locals, else
  // through covered(): its loop over a number[] reloads the elements per call (≈ 100 host
  // instructions a call, a dozen calls a check). An empty range when there are fewer.
  const nr = ignore.length, two = nr <= 8;
  const a0 = nr >= 4 ? ignore[0] : 0, b0 = nr >= 4 ? ignore[1] : 0, a1 = nr >= 4 ? ignore[2] : -1, b1 = nr >= 4 ? ignore[3] : 0;
  const c0 = nr >= 8 ? ignore[4] : 0, d0 = nr >= 8 ? ignore[5] : 0, c1 = nr >= 8 ? ignore[6] : -1, d1 = nr >= 8 ? ignore[7] : 0;
  // (the segment's arrays in locals: an access through a field reloads the field)
  const rn = real.n, rs = real.sizes, rk = real.keys, ro = real.offs, rl = real.lo, rh = real.hi;
  let lastKey = -1, lastPage: Page | undefined;
  for (let i = 0; i < rn; i++) {
    const size = rs[i], key = rk[i], o = ro[i], last = o + size - 1;
    if (two ? inside(key, o, last, a0, b0, a1, b1) || inside(key, o, last, c0, d0, c1, d1) : covered(ignore, key, o, size)) continue;
    // (the callee's two stores share a page)
    const p = key === lastKey ? lastPage : mem.pageAt(key);
    lastKey = key; lastPage = p;
    // (the common case — the callee's stores, made alike by both runs — without the byte loop)
    if (p !== undefined && (size <= 8 ? holdsHalves(p, o, size, rl[i], rh[i]) : bytesEqual(real.bytes, real.at[i], p.data, o, size))) continue;
    const partly = meets(ignore, key, o, size); // (else no byte of it is ignored)
    for (let k = 0; k < size; k++) {
      const x = segByte(real, i, k), y = p === undefined ? -1 : p.data[o + k];
      if (x !== y && !(partly && covered(ignore, key, o + k, 1))) (hits ??= []).push([key, o + k, x, y]);
    }
  }
  // (the first range — the dead stack — covers most of a run's entries: checked first)
  const sizes = j.sizes, keys = j.keys, offs = j.offs;
  // entries not wholly ignored, so far (a byte of an earlier, wholly ignored entry is ignored)
  let nSeen = 0;
  for (let i = from; i < to; i++) {
    const size = sizes[i], key = keys[i], o = offs[i], last = o + size - 1;
    if (inside(key, o, last, a0, b0, a1, b1)) continue;
    if (two ? inside(key, o, last, c0, d0, c1, d1) : covered(ignore, key, o, size)) continue;
    // wholly inside one entry of the first run (the callee's stores, made in both runs): each
    // byte was compared above, so none is looked at again below, and a later entry finds
    // any byte of it it overlaps in `real` too (its `own` needs no record of this one)
    if (size > 0) {
      let q = 0;
      while (q < rn && !(rk[q] === key && ro[q] <= o && o + size <= ro[q] + rs[q])) q++;
      if (q < rn) continue; // (one data entry of the first run wrote every byte of it)
    }
    const p = mem.pageAt(key);
    // per entry, which per-byte look-ups can be skipped: no ignored byte in it, no byte the
    // first run wrote, no earlier entry of this run over its bytes that are not ignored (its
    // old bytes are then its own)
    const partly = meets(ignore, key, o, size), inReal = overlaps(real, 0, real.n, key, o, size);
    let own = size > 0;
    if (own) {
      if (nSeen <= SEEN.length) { for (let q = 0; q < nSeen && own; q++) own = !journalOverlaps(j, SEEN[q], SEEN[q] + 1, key, o, size); }
      else own = !journalOverlaps(j, from, i, key, o, size);
    }
    if (nSeen < SEEN.length) SEEN[nSeen] = i;
    nSeen++;
    for (let k = 0; k < size; k++) {
      if ((partly && covered(ignore, key, o + k, 1)) || (inReal && wrote(real, key, o + k))) continue;
      const x = own ? j.oldByte(i, k) : oldByte(j, from, key, o + k), y = p === undefined ? -1 : p.data[o + k];
      if (x !== y) (hits ??= []).push([key, o + k, x, y]);
    }
  }
  return hits === null ? [] : byteRuns(hits);
}

/**
 * Whether a[i..i+n) equals b[j..j+n) (8 bytes, a word store, unrolled: a loop over typed
 * arrays reloads their length and data pointer per access in this V8).
 */
export function bytesEqual(a: Uint8Array, i: number, b: Uint8Array, j: number, n: number): boolean {
  if (n === 8 && i + 8 <= a.length && j + 8 <= b.length) {
    return a[i] === b[j] && a[i + 1] === b[j + 1] && a[i + 2] === b[j + 2] && a[i + 3] === b[j + 3] &&
      a[i + 4] === b[j + 4] && a[i + 5] === b[j + 5] && a[i + 6] === b[j + 6] && a[i + 7] === b[j + 7];
  }
  for (let k = 0; k < n; k++) if (a[i + k] !== b[j + k]) return false;
  return true;
}

/** Entries diffRuns has seen that are not wholly ignored (past its length: scan them all). */
const SEEN = new Int32Array(32);

/** Whether one of the ranges holds a byte of [off, off + size) of page `key`. */
function meets(r: KeyRanges, key: number, off: number, size: number): boolean {
  const last = off + size - 1;
  for (let i = 0; i < r.length; i += 4) {
    const k0 = r[i], o0 = r[i + 1], k1 = r[i + 2], o1 = r[i + 3];
    // [k0:o0, k1:o1) meets [key:off, key:last]: start <= last and end > off
    if ((k0 < key || (k0 === key && o0 <= last)) && (k1 > key || (k1 === key && o1 > off))) return true;
  }
  return false;
}

/** Whether an entry of `s` in [a, b) wrote a byte of [off, off + size) of page `key`. */
function overlaps(s: Segment, a: number, b: number, key: number, off: number, size: number): boolean {
  for (let i = a; i < b; i++) {
    const o = s.offs[i];
    if (s.keys[i] === key && s.sizes[i] > 0 && o < off + size && off < o + s.sizes[i]) return true;
  }
  return false;
}

/** Whether a data entry of the journal in [a, b) wrote a byte of [off, off + size) of page `key`. */
function journalOverlaps(j: Journal, a: number, b: number, key: number, off: number, size: number): boolean {
  for (let i = a; i < b; i++) {
    const o = j.offs[i];
    if (j.keys[i] === key && j.sizes[i] > 0 && o < off + size && off < o + j.sizes[i]) return true;
  }
  return false;
}

/** The byte at (key, off) before the journal's entries from `from` on: the old byte the first of them to write it saw. */
function oldByte(j: Journal, from: number, key: number, off: number): number {
  for (let i = from; i < j.n; i++) {
    const o = j.offs[i];
    if (j.sizes[i] > 0 && j.keys[i] === key && off >= o && off < o + j.sizes[i]) return j.oldByte(i, off - o);
  }
  return -1;
}

/** Differing bytes [key, off, a, b] as ascending runs of consecutive bytes (one per address). */
function byteRuns(hits: [number, number, number, number][]): MemoryDiff[] {
  const seen = new Set<string>();
  const list = hits.filter((h) => { const id = `${h[0]}:${h[1]}`; if (seen.has(id)) return false; seen.add(id); return true; });
  list.sort((p, q) => p[0] - q[0] || p[1] - q[1]);
  const out: MemoryDiff[] = [];
  const byte = (v: number): number => (v < 0 ? 0 : v);
  let i = 0;
  while (i < list.length) {
    let e = i + 1;
    while (e < list.length && list[e][0] === list[i][0] && list[e][1] === list[e - 1][1] + 1) e++;
    out.push({
      addr: (BigInt(list[i][0]) << 12n) + BigInt(list[i][1]),
      a: Uint8Array.from(list.slice(i, e), (h) => byte(h[2])),
      b: Uint8Array.from(list.slice(i, e), (h) => byte(h[3])),
    });
    i = e;
  }
  return out;
}
