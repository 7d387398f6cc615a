import { Buffer } from "node:buffer";
import { UsageError } from "../errors.js";
import { CpuFault, PF, Vec } from "./events.js";
import type { Journal } from "./journal.js";
import { codeChanged, DECODED_TRACKED, freshEpoch, Page, PAGE_SIZE, Perm } from "./page.js";
import type { Insn } from "./insn.js";
import { PageIndex } from "./page-index.js";
import { copyAligned, putShort, zeroBytes } from "./page-bytes.js";
import { hiOf, isCanonical, loOf, pageKey, toBig } from "./u64.js";

const TLB = 64;

/**
 * The TLB slot of a page, from the low 20 bits of its number `p`: bits 0–5 folded with 6–11
 * and 12–17, so pages 1 MiB apart (the kernel's text and host pages, its stacks and the
 * callee's COOKIE page) do not evict each other on every switch.
 */
function tlbSlot(p: number): number {
  return (p ^ (p >>> 6) ^ (p >>> 12) ^ (p >>> 18)) & (TLB - 1);
}
const TWO32 = 4294967296;

/** A write seen by the write watch: address, size in bytes, and the bytes written. */
export type WriteWatch = (lo: number, hi: number, size: number) => void;

/** Frozen memory contents; cheap to take (page objects are shared copy-on-write). */
export interface MemorySnapshot {
  readonly pages: ReadonlyMap<number, Page>;
}

/**
 * Sparse paged memory with permissions, copy-on-write snapshots, a write watch and
 * decode-cache invalidation. Addresses are (lo, hi) int32 halves; in 32-bit mode hi is 0.
 * Accesses fault with #PF (not present, protection, user/supervisor) or #GP(0) for a
 * non-canonical address (#SS(0) for stack accesses), thrown as CpuFault.
 */
export class Memory {
  /** The mapped pages by page number (a read-only view: only Memory changes it; see PageIndex). */
  get pages(): ReadonlyMap<number, Page> { return this.index; }
  private readonly index = new PageIndex();
  epoch = freshEpoch();
  /** Bumped when a page object holding decoded code is replaced or remapped. */
  gen = 0;
  /** Accesses are made at CPL 3 (user) rather than supervisor. */
  user = false;
  watch: WriteWatch | null = null;
  /** Sees every data read (not instruction fetches): address and size. */
  readWatch: WriteWatch | null = null;
  /** Sees every loader write (`load`) before it lands: address and length (cross-modifying-code fetch models). */
  beforeLoad: ((addr: bigint, len: number) => void) | null = null;
  /** When set, every write and mapping change is recorded for `rollback` (see journal.ts). */
  journal: Journal | null = null;
  /** Zeroed pages left by rollback, reused by `map`. */
  private readonly spare: Page[] = [];

  // The TLBs: per slot the page number as its int32 parts — `lo >>> 12` (-1: empty) and `hi` —
  // (compared without making the near-2^52 page key, a double), and the page.
  private readonly rPn = new Int32Array(TLB).fill(-1);
  private readonly rHi = new Int32Array(TLB);
  private readonly rPage: (Page | null)[] = new Array<Page | null>(TLB).fill(null);
  private readonly wPn = new Int32Array(TLB).fill(-1);
  private readonly wHi = new Int32Array(TLB);
  private readonly wPage: (Page | null)[] = new Array<Page | null>(TLB).fill(null);
  /** Instruction fetches: pages that passed the fetch checks (present, U at CPL 3, X) at the current privilege. */
  private readonly xPn = new Int32Array(TLB).fill(-1);
  private readonly xHi = new Int32Array(TLB);
  private readonly xPage: (Page | null)[] = new Array<Page | null>(TLB).fill(null);

  // ---- mapping -------------------------------------------------------------------------

  /** Maps `size` bytes (rounded out to pages) at `addr` with `perm`; fresh pages are zero. */
  map(addr: bigint, size: number, perm: number): void {
    this.forPages(addr, size, (key) => {
      const old = this.index.get(key);
      if (old) {
        if (old.perm !== perm) this.replace(key, new Page(old.data.slice(), perm, this.epoch), true);
      } else {
        if (this.journal !== null) this.journal.mapping(key, undefined);
        this.put(key, this.freshPage(perm));
      }
    });
    this.flush();
  }

  /** Changes the permissions of mapped pages (unmapped pages in the range are an error). */
  protect(addr: bigint, size: number, perm: number): void {
    this.forPages(addr, size, (key) => {
      const old = this.index.get(key);
      if (!old) throw new UsageError(`protect: page ${hexKey(key)} is not mapped`);
      this.replace(key, new Page(old.data.slice(), perm, this.epoch), true);
    });
    this.flush();
  }

  /** Removes pages; later accesses take #PF (not present). */
  unmap(addr: bigint, size: number): void {
    this.forPages(addr, size, (key) => {
      this.dropCode(key - 1);
      if (this.journal !== null && this.index.has(key)) { this.journal.pagesMayChange(); this.journal.mapping(key, this.index.get(key)); }
      this.drop(key);
    });
    this.gen++;
    this.flush();
  }

  isMapped(addr: bigint): boolean {
    return this.index.has(keyOf(addr));
  }

  permOf(addr: bigint): number | undefined {
    return this.index.get(keyOf(addr))?.perm;
  }

  private forPages(addr: bigint, size: number, f: (key: number) => void): void {
    if (size <= 0 || !Number.isInteger(size)) throw new UsageError(`memory size must be a positive integer, got ${size}`);
    const a = BigInt.asUintN(64, addr);
    const first = a >> 12n;
    const last = (a + BigInt(size) - 1n) >> 12n;
    if (last >= 1n << 52n) throw new UsageError(`range 0x${a.toString(16)}+${size} wraps past 2^64`);
    for (let k = first; k <= last; k++) f(Number(k));
  }

  private replace(key: number, p: Page, dropPrev: boolean): void {
    if (dropPrev) this.dropCode(key - 1);
    if (this.journal !== null) { this.journal.pagesMayChange(); this.journal.mapping(key, this.index.get(key)); }
    this.put(key, p);
    this.gen++;
  }

  /** Page `key` is `p` now. */
  private put(key: number, p: Page): void {
    this.index.set(key, p);
  }

  /** Page `key` is unmapped now. */
  private drop(key: number): void {
    this.index.delete(key);
  }

  /** The page numbered `key` (hi * 2^20 + (lo >>> 12)), if mapped: `pages.get` without the Map. */
  pageAt(key: number): Page | undefined {
    return this.index.get(key);
  }

  private dropCode(key: number): void {
    const p = this.index.get(key);
    if (p && p.code) {
      p.code = null;
      codeChanged(p);
      this.gen++;
    }
  }

  /** Forgets cached translations (after a mapping, privilege or snapshot change). */
  flush(): void {
    this.rPn.fill(-1);
    this.wPn.fill(-1);
    this.xPn.fill(-1);
  }

  // ---- snapshots -----------------------------------------------------------------------

  snapshot(): MemorySnapshot {
    const snap = { pages: new Map(this.index) };
    this.epoch = freshEpoch(); // every current page is now shared with the snapshot
    if (this.journal !== null) this.journal.pagesMayChange();
    this.flush();
    return snap;
  }

  restore(snap: MemorySnapshot): void {
    if (this.journal !== null) this.journal.broken = true;
    this.index.reset(snap.pages);
    this.epoch = freshEpoch();
    this.gen++;
    this.flush();
  }

  // ---- page lookup ---------------------------------------------------------------------

  /** The page for a fetch/read at the current privilege, or a thrown #PF/#GP. */
  readPage(lo: number, hi: number, fetch: boolean, stack: boolean): Page {
    // (the TLB hit stays small so that V8 inlines it into the accesses; misses go out of line)
    const pn = lo >>> 12;
    const i = tlbSlot(pn);
    if (fetch) { if (this.xPn[i] === pn && this.xHi[i] === (hi | 0)) return this.xPage[i] as Page; }
    else if (this.rPn[i] === pn && this.rHi[i] === (hi | 0)) return this.rPage[i] as Page;
    return this.readMiss(lo, hi, fetch, stack);
  }

  /** readPage past the TLB: the checks, then the TLB fill. */
  private readMiss(lo: number, hi: number, fetch: boolean, stack: boolean): Page {
    const key = (hi >>> 0) * 1048576 + (lo >>> 12);
    const i = tlbSlot(lo >>> 12);
    if (!isCanonical(lo, hi)) throw new CpuFault(stack ? Vec.SS : Vec.GP, 0, undefined, `non-canonical address ${hexAddr(lo, hi)}`);
    const p = this.index.get(key);
    const user = this.user === true; // (=== true: the field's truthiness tested generically cost ≈ 15 host instructions a test)
    const u = user ? PF.U : 0;
    const why = fetch ? PF.I : 0;
    if (p === undefined) throw new CpuFault(Vec.PF, u | why, toBig(lo, hi));
    if (user && !(p.perm & Perm.U)) throw new CpuFault(Vec.PF, PF.P | u | why, toBig(lo, hi));
    if (fetch) {
      if (!(p.perm & Perm.X)) throw new CpuFault(Vec.PF, PF.P | u | PF.I, toBig(lo, hi));
      this.xPn[i] = lo >>> 12;
      this.xHi[i] = hi;
      this.xPage[i] = p;
      return p;
    }
    this.rPn[i] = lo >>> 12;
    this.rHi[i] = hi;
    this.rPage[i] = p;
    return p;
  }

  /**
   * Fills the fetch TLB with page `key`, just mapped as `p`, when a fetch there would pass
   * readMiss's checks now (canonical, U at CPL 3, X): what the first fetch's readMiss would
   * do, without its look-up. (A privilege change flushes the TLBs, as for any fill; the slot
   * held some other page, or nothing: an unmapped page has no slot.)
   */
  private primeFetch(key: number, p: Page): void {
    const h = Math.floor(key / 1048576), pn = key - h * 1048576, hi = h | 0; // (not key % 2^20: a float remainder, slow)
    const top = hi >> 15;
    if ((top !== 0 && top !== -1) || (p.perm & Perm.X) === 0 || (this.user && (p.perm & Perm.U) === 0)) return;
    const i = tlbSlot(pn);
    this.xPn[i] = pn;
    this.xHi[i] = hi;
    this.xPage[i] = p;
  }

  /** The page for a write, copied first if shared with a snapshot. */
  writePage(lo: number, hi: number, stack: boolean): Page {
    const pn = lo >>> 12;
    const i = tlbSlot(pn);
    if (this.wPn[i] === pn && this.wHi[i] === (hi | 0)) return this.wPage[i] as Page;
    return this.writeMiss(lo, hi, stack);
  }

  /** writePage past the TLB: the checks, the copy-on-write, then the TLB fill (pages holding code stay out of it). */
  private writeMiss(lo: number, hi: number, stack: boolean): Page {
    const key = (hi >>> 0) * 1048576 + (lo >>> 12);
    const i = tlbSlot(lo >>> 12);
    if (!isCanonical(lo, hi)) throw new CpuFault(stack ? Vec.SS : Vec.GP, 0, undefined, `non-canonical address ${hexAddr(lo, hi)}`);
    let p = this.index.get(key);
    const user = this.user === true; // (as readMiss)
    const u = user ? PF.U : 0;
    if (p === undefined) throw new CpuFault(Vec.PF, PF.W | u, toBig(lo, hi));
    if ((user && !(p.perm & Perm.U)) || !(p.perm & Perm.W)) throw new CpuFault(Vec.PF, PF.P | PF.W | u, toBig(lo, hi));
    if (p.epoch !== this.epoch) {
      const had = p.code !== null;
      p = p.copyFor(this.epoch);
      this.put(key, p);
      if (had) this.gen++;
      this.rPn[i] = -1;
      this.xPn[i] = -1;
    }
    if (p.code === null && !p.crossIn) {
      this.wPn[i] = lo >>> 12;
      this.wHi[i] = hi;
      this.wPage[i] = p;
    }
    return p;
  }

  /** Called when code is decoded into `p`: its writes must now take the invalidating path. */
  codeAdded(): void {
    this.wPn.fill(-1);
  }

  // ---- reads ---------------------------------------------------------------------------

  read8(lo: number, hi: number): number {
    if (this.readWatch !== null) this.readWatch(lo, hi, 1);
    return this.readPage(lo, hi, false, false).data[lo & 4095];
  }

  read16(lo: number, hi: number, stack = false): number {
    if (this.readWatch !== null) this.readWatch(lo, hi, 2);
    const off = lo & 4095;
    if (off <= 4094) return this.readPage(lo, hi, false, stack).dv.getUint16(off, true);
    return this.readSlow(lo, hi, 2, stack);
  }

  read32(lo: number, hi: number, stack = false): number {
    if (this.readWatch !== null) this.readWatch(lo, hi, 4);
    const off = lo & 4095;
    if (off <= 4092) return this.readPage(lo, hi, false, stack).dv.getInt32(off, true);
    return this.readSlow(lo, hi, 4, stack) | 0;
  }

  /** High half of the last read64. */
  rhi = 0;

  /** Reads 8 bytes; returns the low half, leaves the high half in `rhi`. */
  read64(lo: number, hi: number, stack = false): number {
    if (this.readWatch !== null) this.readWatch(lo, hi, 8);
    const off = lo & 4095;
    if (off <= 4088) {
      const dv = this.readPage(lo, hi, false, stack).dv;
      this.rhi = dv.getInt32(off + 4, true);
      return dv.getInt32(off, true);
    }
    const l = this.readSlow(lo, hi, 4, stack) | 0;
    const n = (lo >>> 0) + 4;
    const h = this.readSlow(n | 0, (hi + (n >= TWO32 ? 1 : 0)) | 0, 4, stack) | 0;
    this.rhi = h;
    return l;
  }

  /** Byte-wise read checking every page it touches. */
  private readSlow(lo: number, hi: number, size: number, stack: boolean): number {
    let v = 0;
    for (let k = 0; k < size; k++) {
      const a = (lo >>> 0) + k;
      const l = a | 0, h = (hi + (a >= TWO32 ? 1 : 0)) | 0;
      v += this.readPage(l, h, false, stack).data[l & 4095] * 2 ** (8 * k);
    }
    return v;
  }

  // ---- writes --------------------------------------------------------------------------

  write8(lo: number, hi: number, v: number): void {
    const p = this.writePage(lo, hi, false);
    const off = lo & 4095;
    if (this.journal !== null) this.journal.recordAt(p, lo, hi, off, 1);
    p.data[off] = v;
    if (p.code !== null || p.crossIn) this.invalidate(p, lo, hi, off, 1);
    if (this.watch !== null) this.watch(lo, hi, 1);
  }

  write16(lo: number, hi: number, v: number, stack = false): void {
    const off = lo & 4095;
    if (off > 4094) return this.writeSlow(lo, hi, 2, v, 0, stack);
    const p = this.writePage(lo, hi, stack);
    if (this.journal !== null) this.journal.recordAt(p, lo, hi, off, 2);
    p.dv.setUint16(off, v & 0xffff, true);
    if (p.code !== null || p.crossIn) this.invalidate(p, lo, hi, off, 2);
    if (this.watch !== null) this.watch(lo, hi, 2);
  }

  write32(lo: number, hi: number, v: number, stack = false): void {
    const off = lo & 4095;
    if (off > 4092) return this.writeSlow(lo, hi, 4, v, 0, stack);
    const p = this.writePage(lo, hi, stack);
    if (this.journal !== null) this.journal.recordAt(p, lo, hi, off, 4);
    if ((off & 3) === 0) p.i32[off >> 2] = v; // (a word store: DataView's goes through a double)
    else p.dv.setInt32(off, v, true);
    if (p.code !== null || p.crossIn) this.invalidate(p, lo, hi, off, 4);
    if (this.watch !== null) this.watch(lo, hi, 4);
  }

  write64(lo: number, hi: number, vlo: number, vhi: number, stack = false): void {
    const off = lo & 4095;
    if (off > 4088) return this.writeSlow(lo, hi, 8, vlo, vhi, stack);
    const p = this.writePage(lo, hi, stack);
    if (this.journal !== null) this.journal.recordAt(p, lo, hi, off, 8);
    if ((off & 3) === 0) { const w = p.i32, q = off >> 2; w[q] = vlo; w[q + 1] = vhi; } // (word stores: DataView's go through a double)
    else { const dv = p.dv; dv.setInt32(off, vlo, true); dv.setInt32(off + 4, vhi, true); }
    if (p.code !== null || p.crossIn) this.invalidate(p, lo, hi, off, 8);
    if (this.watch !== null) this.watch(lo, hi, 8);
  }

  /** A write across a page boundary: both pages are checked before any byte lands. */
  private writeSlow(lo: number, hi: number, size: number, vlo: number, vhi: number, stack: boolean): void {
    const pages: Page[] = [];
    for (let k = 0; k < size; k++) {
      const a = (lo >>> 0) + k;
      pages.push(this.writePage(a | 0, (hi + (a >= TWO32 ? 1 : 0)) | 0, stack));
    }
    for (let k = 0; k < size; k++) {
      const a = (lo >>> 0) + k;
      const l = a | 0, h = (hi + (a >= TWO32 ? 1 : 0)) | 0;
      const b = k < 4 ? (vlo >>> (8 * k)) & 0xff : (vhi >>> (8 * (k - 4))) & 0xff;
      const p = pages[k];
      if (this.journal !== null) this.journal.recordAt(p, l, h, l & 4095, 1);
      p.data[l & 4095] = b;
      if (p.code !== null || p.crossIn) this.invalidate(p, l, h, l & 4095, 1);
    }
    if (this.watch !== null) this.watch(lo, hi, size);
  }

  /** Drops decoded instructions overlapping [off, off+len) of p (and ones running in from the page before). */
  private invalidate(p: Page, lo: number, hi: number, off: number, len: number): void {
    const code = p.code;
    if (code !== null) {
      codeChanged(p);
      for (let s = Math.max(0, off - 14); s < off + len && s < PAGE_SIZE; s++) {
        const ins = code[s];
        if (ins !== undefined && s + ins.len > off) {
          code[s] = undefined;
        }
      }
    }
    if (p.crossIn && off < 15) {
      const prev = this.index.get(pageKey(lo, hi) - 1);
      const pc = prev?.code;
      if (pc) {
        codeChanged(prev as Page);
        for (let s = PAGE_SIZE - 14; s < PAGE_SIZE; s++) {
          const ins = pc[s];
          if (ins !== undefined && s + ins.len > PAGE_SIZE + off) {
            pc[s] = undefined;
          }
        }
      }
    }
  }

  // ---- bulk access for loaders and host code (supervisor, bypassing nothing but U) ------

  /** Copies bytes out; throws #PF as a CpuFault where a page is missing. */
  readBytes(addr: bigint, len: number): Uint8Array {
    const out = new Uint8Array(len);
    const a = BigInt.asUintN(64, addr);
    for (let k = 0; k < len; k++) {
      const x = BigInt.asUintN(64, a + BigInt(k));
      out[k] = this.read8(Number(BigInt.asIntN(32, x)), Number(BigInt.asIntN(32, x >> 32n)));
    }
    return out;
  }

  /** Writes bytes with write checks (and decode-cache invalidation). */
  writeBytes(addr: bigint, bytes: Uint8Array | readonly number[]): void {
    const a = BigInt.asUintN(64, addr);
    for (let k = 0; k < bytes.length; k++) {
      const x = BigInt.asUintN(64, a + BigInt(k));
      this.write8(Number(BigInt.asIntN(32, x)), Number(BigInt.asIntN(32, x >> 32n)), bytes[k]);
    }
  }

  /** Loads bytes ignoring write protection (a loader, not the CPU); pages must be mapped. */
  load(addr: bigint, bytes: Uint8Array | readonly number[]): void {
    const a = BigInt.asUintN(64, addr);
    this.loadAt(loOf(a), hiOf(a), bytes);
    this.flush();
  }

  // ---- number-address variants for hot host code (same semantics, no BigInt) -------------

  /**
   * Maps page number `key` with `perm` when it is not mapped (as `map` does for one page);
   * returns whether it mapped it now (the page is then all zero until written).
   */
  mapPage(key: number, perm: number): boolean {
    const old = this.index.get(key);
    if (old !== undefined) {
      if (old.perm !== perm) this.map(BigInt(key) << 12n, PAGE_SIZE, perm);
      return false;
    }
    if (this.journal !== null) this.journal.mapping(key, undefined);
    const p = this.freshPage(perm);
    this.put(key, p);
    this.primeFetch(key, p); // (code is laid here next, most often, and run: see primeFetch)
    return true;
  }

  /**
   * mapPage and loadAt in one, for a page not mapped yet: maps page `key` fresh with `perm`
   * and puts `len` bytes at offset `off` (within the page), given as little-endian int32
   * words (`words[q]` holds bytes 4q..4q+3: whole words go in as unaligned word stores; a byte
   * loop from a number array cost ≈ 35 host instructions a byte here). Its old
   * bytes are zeros by construction, so the journal keeps one mapping entry that also names
   * the laid range (rollback zeroes it when it unmaps the page) instead of a mapping and a
   * zero-fill entry. Returns false, doing nothing, when the page is mapped, the bytes run
   * past it, or a beforeLoad hook wants to see the load: the caller maps and loads as usual.
   */
  mapFresh(key: number, perm: number, off: number, words: Int32Array, len: number): boolean {
    if (this.beforeLoad !== null || off + len > PAGE_SIZE) return false;
    const slot = this.index.find(key); // (one probe finds it absent and where it goes)
    if (slot >= 0) return false;
    const p = this.freshPage(perm);
    const dv = p.dv, nw = len >> 2, r = len & 3;
    for (let q = 0; q < nw; q++) dv.setInt32(off + 4 * q, words[q], true);
    if (r !== 0) {
      const d = p.data, o = off + 4 * nw, v = words[nw];
      d[o] = v;
      if (r > 1) d[o + 1] = v >>> 8;
      if (r > 2) d[o + 2] = v >>> 16;
    }
    if (this.journal !== null) this.journal.mapping(key, undefined, off, len);
    this.index.addAt(slot, key, p);
    // (as mapPage: the laid code runs next. Without it the real run's first fetches on the
    // site's and the target's pages each went through readMiss: 1.9 fetch misses a 64-bit
    // check, 0.14 with it; −276 host instructions a check)
    this.primeFetch(key, p);
    this.gen++; // (as loadAt)
    return true;
  }

  /**
   * `load` at the address (lo, hi) of the first `len` bytes of `bytes`. `oldZero`: the caller
   * knows the bytes there are all zero now (a page it just mapped): the journal then keeps
   * no copy of them (see Journal.recordZero).
   */
  loadAt(lo: number, hi: number, bytes: Uint8Array | readonly number[], len = bytes.length, oldZero = false): void {
    if (this.beforeLoad !== null && len > 0) this.beforeLoad(toBig(lo, hi), len);
    let k = 0;
    this.loadCopied = false;
    while (k < len) {
      const a = (lo >>> 0) + k;
      const l = a | 0, h = (hi + (a >= TWO32 ? 1 : 0)) | 0;
      const key = pageKey(l, h);
      const p = this.loadPage(key, l, h);
      const off = l & 4095;
      const n = Math.min(len - k, 4096 - off);
      if (this.journal !== null) {
        if (oldZero) this.journal.recordZero(p, key, off, n);
        else this.journal.record(p, key, off, n);
      }
      const d = p.data;
      if (bytes instanceof Uint8Array) {
        if (n > 16) d.set(k === 0 && n === bytes.length ? bytes : bytes.subarray(k, k + n), off);
        else for (let i = 0; i < n; i++) d[off + i] = bytes[k + i];
      } else copyFromArray(d, off, bytes, k, n);
      this.loaded(p, key, l, h, off, n);
      k += n;
    }
    this.gen++;
    if (this.loadCopied) this.flush();
  }

  /**
   * `loadAt` of `len` bytes repeating `pattern` (byte i is pattern[i % pattern.length]),
   * written in place: the same checks, journal entries, invalidation and TLB handling.
   * `oldZero`: the caller knows the bytes there are all zero now (the journal then keeps
   * no copy of them: see Journal.recordZero).
   */
  fillAt(lo: number, hi: number, len: number, pattern: Uint8Array, oldZero = false): void {
    if (this.beforeLoad !== null && len > 0) this.beforeLoad(toBig(lo, hi), len);
    const plen = pattern.length;
    if (plen === 0) throw new UsageError("fill: empty pattern");
    let k = 0;
    this.loadCopied = false;
    // (a pattern that is a view of memory this fill writes is copied before the first write
    // to that buffer: its bytes are the ones before the fill)
    let src = pattern;
    const buf = pattern.buffer;
    while (k < len) {
      const a = (lo >>> 0) + k;
      const l = a | 0, h = (hi + (a >= TWO32 ? 1 : 0)) | 0;
      const key = pageKey(l, h);
      const p = this.loadPage(key, l, h);
      const off = l & 4095;
      const n = Math.min(len - k, 4096 - off);
      if (this.journal !== null) {
        if (oldZero) this.journal.recordZero(p, key, off, n);
        else this.journal.record(p, key, off, n);
      }
      const d = p.data;
      if (src === pattern && buf === p.buffer) src = pattern.slice();
      // one period (from the pattern's phase at k), then doubling copies of whole periods.
      // (Measured: a copyWithin call is ≈ 250 host instructions; building more of the fill in
      // JS first — a period made a multiple of 4 bytes, then word copies to 128 bytes, 2–3
      // calls instead of ≈ 7 — was no faster and cost ≈ 400 instructions more a check.)
      let w = Math.min(plen, n), ph = k % plen;
      if (n >= FILL_NATIVE_MIN) {
        // the bytes before the pattern's next period start, then Node's Buffer fill from there
        // (one native call that repeats the pattern by doubling copies itself: ≈ 1.1 k host
        // instructions for a 1,280-byte window against ≈ 2.6 k for the copyWithin calls below)
        const head = ph === 0 ? 0 : plen - ph;
        for (let i = 0; i < head; i++) d[off + i] = src[ph + i];
        BUFFER_FILL.call(d, src, off + head, off + n);
        w = n;
      } else for (let i = 0; i < w; i++) { d[off + i] = src[ph]; if (++ph === plen) ph = 0; }
      while (w < n) {
        const c = Math.min(w, n - w);
        d.copyWithin(off + w, off, off + c);
        w += c;
      }
      this.loaded(p, key, l, h, off, n);
      k += n;
    }
    this.gen++;
    if (this.loadCopied) this.flush();
  }
  /**
   * `loadAt(lo, hi, [v])` — one byte, as a loader writes it (a patch site's INT3) — with
   * the page taken from a TLB slot when one holds it (the slots are filled from the index
   * and dropped whenever it changes; a page shared with a snapshot still goes through
   * loadPage's copy-on-write): the same checks, journal entry, invalidation and generation.
   */
  poke8(lo: number, hi: number, v: number): void {
    if (this.beforeLoad !== null) this.beforeLoad(toBig(lo, hi), 1);
    const pn = lo >>> 12, i = tlbSlot(pn), h = hi | 0, key = pageKey(lo, hi);
    let p: Page | null = null;
    if (this.xPn[i] === pn && this.xHi[i] === h) p = this.xPage[i];
    else if (this.rPn[i] === pn && this.rHi[i] === h) p = this.rPage[i];
    this.loadCopied = false;
    if (p === null || p.epoch !== this.epoch) p = this.loadPage(key, lo, hi);
    const off = lo & 4095;
    if (this.journal !== null) this.journal.record(p, key, off, 1);
    p.data[off] = v;
    const at = p.decodedAt;
    // (decoded code on the page, none running in from the one before, and every offset that
    // got an instruction known — decode-cache.ts records them, for recycle: only those can
    // overlap the byte, so they are looked at instead of the 15 offsets before it)
    if (p.code !== null && p.crossIn === false && at !== null && p.decodedN <= DECODED_TRACKED) dropOverlapping(p, p.code, at, p.decodedN, off);
    else this.loaded(p, key, lo, hi, off, 1);
    this.gen++;
    if (this.loadCopied) this.flush();
  }

  /** Whether the current loadAt/fillAt copied a page (its TLB slots are then stale). */
  private loadCopied = false;

  /** Page `key` (holding (l, h)) for loadAt/fillAt, made this epoch's own (copy-on-write). */
  private loadPage(key: number, l: number, h: number): Page {
    let p = this.index.get(key);
    if (!p) throw new UsageError(`load: 0x${toBig(l, h).toString(16)} is not mapped`);
    if (p.epoch !== this.epoch) {
      p = p.copyFor(this.epoch);
      this.put(key, p);
      this.loadCopied = true;
    }
    return p;
  }

  /** After loadAt/fillAt wrote n bytes at off of page p: a short write (a patch site) drops only the decoded instructions it overlaps. */
  private loaded(p: Page, key: number, l: number, h: number, off: number, n: number): void {
    if (n <= 64) { if (p.code !== null || p.crossIn) this.invalidate(p, l, h, off, n); }
    else {
      if (p.code) this.dropCode(key);
      if (off < 15) this.dropCode(key - 1);
    }
  }


  /** Called when code is decoded into the page at (lo, hi): only its write-TLB slot must go. */
  codeAddedAt(lo: number, hi: number): void {
    const i = tlbSlot(lo >>> 12);
    if (this.wPn[i] === lo >>> 12 && this.wHi[i] === (hi | 0)) this.wPn[i] = -1;
  }

  // ---- the write journal -----------------------------------------------------------------

  /**
   * Undoes every write and mapping change the attached journal recorded after `mark`,
   * newest first: old bytes go back (decoded instructions over them are dropped), pages
   * mapped since are removed (and kept, zeroed, for reuse), replaced pages come back.
   */
  rollback(mark: number): void {
    const j = this.journal;
    if (j === null) throw new UsageError("rollback: no journal attached");
    if (j.broken) throw new UsageError("rollback: the journal is broken (memory was restored from a snapshot, or it overflowed)");
    let remapped = false;
    const old = j.old, keys = j.keys, offs = j.offs, sizes = j.sizes, at = j.at, vlo = j.vlo, vhi = j.vhi, pages = j.pages;
    const slow = j.slowBelow; // (nothing below changes it before the end)
    // Pages mapped fresh after `mark` go back to the spare list below, their decode caches
    // emptied there (recycle): writes to them need no invalidation on the way. An undone write
    // on a page with decoded code and none running in from the page before (crossIn false:
    // invalidate then touches only the page's own cache) is put off to the end (LATE), when
    // a recycled page has no code left to look at — the INT3 byte of a check, on its fresh
    // site page (listing the fresh pages up front, freshSince, cost ≈ 550 host instructions
    // a check). Dropping decoded instructions commutes with the rest of the undo, which only
    // drops more (recycle, the unmappings' cross-in invalidation). Other pages with code take
    // the fresh-page list (freshSince, when one first needs it; -1: not yet).
    let nFresh = -1, nLate = 0;
    const from = Math.max(mark, slow);
    let q: number;
    // Zero fills after `mark` (recordZero): undoing one writes zeros over its range, so a
    // later entry wholly inside it (on the page object it names) needs no bytes put back first.
    let nZero = 0;
    const zs = j.zeroAt;
    q = j.nZeros;
    while (q > 0 && zs[q - 1] >= from) q--;
    for (; q < j.nZeros && nZero < ZERO.length; q++) {
      const z = zs[q];
      ZERO[nZero] = z; ZERO_PAGE[nZero] = pages[z] as Page; ZERO_LO[nZero] = offs[z]; ZERO_HI[nZero] = offs[z] + sizes[z];
      nZero++;
    }
    // (the first of them in locals too — a check has one, its stack window: looking it up in
    // the module's arrays, zeroed(), cost ≈ 150 host instructions an entry)
    const z0 = nZero !== 0 ? ZERO[0] : -1, z0Page = ZERO_PAGE[0], z0Lo = ZERO_LO[0], z0Hi = ZERO_HI[0];
    for (let i = j.n - 1; i >= mark; i--) {
      const size = sizes[i], key = keys[i];
      if (size === 0) {
        // (an unmapping takes the page out in the same probe that finds it)
        const prev = pages[i], cur = prev === undefined ? this.index.take(key) : this.index.get(key);
        // instructions of the page before that ran into this one go (invalidate's cross-in path:
        // it looks up only that page, key - 1)
        if (cur !== undefined && cur.crossIn) { const h = Math.floor(key / 1048576); this.invalidate(cur, ((key - h * 1048576) << 12) | 0, h | 0, 0, 1); }
        this.dropSlots(key);
        if (prev === undefined) {
          // a page mapped inside the journal whose every write was undone above is zero again,
          // once the bytes mapFresh laid with the mapping are zeroed (none: vlo 0)
          if (cur !== undefined && cur.epoch === this.epoch) {
            const laid = vlo[i];
            if (laid !== 0) { const o = offs[i]; zeroBytes(cur.data, cur.i32, o, o + laid); }
            this.recycle(cur);
          }
        } else this.put(key, prev);
        remapped = true;
        continue;
      }
      let p = pages[i] as Page;
      if (i < slow) {
        // the recorded object may have been replaced or be shared with a snapshot since
        const q = this.index.get(key);
        if (q === undefined) continue;
        p = q.epoch === this.epoch ? q : q.copyFor(this.epoch);
        if (p !== q) { this.put(key, p); this.dropSlots(key); remapped = true; }
      }
      const off = offs[i];
      // (an entry of 8 bytes or less costs less to put back than to look up)
      if (size > 8 && vhi[i] === 1) zeroBytes(p.data, p.i32, off, off + size); // (recordZero; first: a zero fill inside an older one may as well write its zeros)
      else if (size > 8 && nZero !== 0 && i >= slow && ((p === z0Page && z0 < i && z0Lo <= off && off + size <= z0Hi) || (nZero > 1 && zeroed(nZero, i, p, off, size)))) { /* (the fill's undo below writes its zeros) */ }
      else if (size === 8) {
        // (putShort's 8-byte case written out: most entries are pushes and stores of 8 bytes, and
        // this function is past V8's inlining budget — the call cost ≈ 200 host instructions a check)
        if ((off & 3) === 0) { const w = p.i32, q = off >> 2; w[q] = vlo[i]; w[q + 1] = vhi[i]; }
        else { const dv = p.dv; dv.setInt32(off, vlo[i], true); dv.setInt32(off + 4, vhi[i], true); }
      }
      else if (size === 1) p.data[off] = vlo[i]; // (a patch site's INT3: putShort's case, without the call)
      else if (size <= 8) putShort(p.data, p.i32, p.dv, off, size, vlo[i], vhi[i]);
      else if (vhi[i] >= 2) j.undoRun(i, p.dv); // (a run of pushes, Journal.extend)
      else if ((off & 3) === 0) copyAligned(old, j.oldW, at[i], p.data, p.i32, off, size); // (at[i] is word-aligned)
      else if (size <= 64) { const d = p.data, a = at[i]; for (let k = 0; k < size; k++) d[off + k] = old[a + k]; }
      else p.data.set(old.subarray(at[i], at[i] + size), off);
      if (p.code !== null || p.crossIn) {
        if (p.crossIn === false && nLate < LATE.length) { LATE[nLate] = p; LATE_KEY[nLate] = key; LATE_OFF[nLate] = off; LATE_SIZE[nLate] = size; nLate++; continue; }
        if (nFresh < 0) nFresh = this.freshSince(j, from);
        if (!(nFresh !== 0 && i >= slow && isFresh(p, nFresh))) {
          const h = Math.floor(key / 1048576), hi = h | 0, lo = (((key - h * 1048576) << 12) | off) | 0;
          this.invalidate(p, lo, hi, off, size);
        }
      }
    }
    for (let k = 0; k < nLate; k++) {
      const p = LATE[k] as Page;
      LATE[k] = null;
      if (p.code !== null) { // (null: recycled above)
        const key = LATE_KEY[k], off = LATE_OFF[k], h = Math.floor(key / 1048576);
        this.invalidate(p, (((key - h * 1048576) << 12) | off) | 0, h | 0, off, LATE_SIZE[k]);
      }
    }
    for (let k = 0; k < nFresh; k++) FRESH[k] = null;
    for (let k = 0; k < nZero; k++) ZERO_PAGE[k] = null;
    j.truncate(mark);
    if (j.slowBelow > mark) j.slowBelow = mark;
    if (remapped) this.gen++; // (the translations of the remapped pages went with dropSlots)
  }

  /**
   * Lists in FRESH (returns how many) the pages now held under the fresh mappings (mapped
   * where nothing was) recorded from entry `from` on and not undone yet, this epoch's own:
   * rollback unmaps each of them further on (recycled, or left to a snapshot), so a write
   * undone on one of them needs no invalidation. (A mapping undone already left no page.)
   */
  private freshSince(j: Journal, from: number): number {
    const maps = j.mapAt, pages = j.pages, keys = j.keys;
    let n = 0, q = j.nMaps;
    while (q > 0 && maps[q - 1] >= from) q--;
    for (; q < j.nMaps && n < FRESH.length; q++) {
      const i = maps[q];
      if (pages[i] === undefined) {
        const cur = this.index.get(keys[i]);
        if (cur !== undefined && cur.epoch === this.epoch) FRESH[n++] = cur;
      }
    }
    return n;
  }

  /** Forgets the cached translations of page `key` (its slot in each TLB, when it holds it). */
  private dropSlots(key: number): void {
    const h = Math.floor(key / 1048576), pn = key - h * 1048576, hi = h | 0; // (not key % 2^20: a float remainder, slow)
    const i = tlbSlot(pn);
    if (this.rPn[i] === pn && this.rHi[i] === hi) { this.rPn[i] = -1; this.rPage[i] = null; }
    if (this.wPn[i] === pn && this.wHi[i] === hi) { this.wPn[i] = -1; this.wPage[i] = null; }
    if (this.xPn[i] === pn && this.xHi[i] === hi) { this.xPn[i] = -1; this.xPage[i] = null; }
  }

  /** Keeps a zeroed page for reuse, with its decode cache emptied (its array kept when the offsets are known). */
  private recycle(p: Page): void {
    const code = p.code, at = p.decodedAt, n = p.decodedN;
    if (code !== null && at !== null && n <= DECODED_TRACKED) {
      for (let i = 0; i < n; i++) code[at[i]] = undefined;
      p.spareCode = code; // empty now: kept for the next decode here, while writes skip invalidation
    }
    p.code = null;
    codeChanged(p);
    p.decodedN = 0;
    p.crossIn = false;
    if (this.spare.length < 64) this.spare.push(p);
  }

  /** A zeroed page for `map`: a spare one if rollback left any. */
  private freshPage(perm: number): Page {
    const p = this.spare.pop();
    if (p === undefined) return new Page(new Uint8Array(PAGE_SIZE), perm, this.epoch);
    p.perm = perm;
    p.epoch = this.epoch;
    return p;
  }
}

/**
 * Zero-fill entries a rollback will undo (see rollback), with their page objects and byte
 * ranges [lo, hi) (read once per rollback); a few are enough, the rest undo as usual.
 */
const ZERO = new Int32Array(4);
const ZERO_PAGE: (Page | null)[] = [null, null, null, null];
const ZERO_LO = new Int32Array(4);
const ZERO_HI = new Int32Array(4);

/** Whether one of the first `n` ZERO entries, older than entry i and on its page object, covers [off, off + size). */
function zeroed(n: number, i: number, p: Page, off: number, size: number): boolean {
  for (let k = 0; k < n; k++) {
    if (ZERO_PAGE[k] === p && ZERO[k] < i && ZERO_LO[k] <= off && off + size <= ZERO_HI[k]) return true;
  }
  return false;
}

/**
 * d[off + i] = bytes[k + i] for i < n, for loadAt's plain arrays: a loop of its own, so that
 * its element loads see only arrays (the host's short byte lists) and stay monomorphic.
 */
function copyFromArray(d: Uint8Array, off: number, bytes: readonly number[], k: number, n: number): void {
  for (let i = 0; i < n; i++) d[off + i] = bytes[k + i];
}

/**
 * Node's `Buffer.prototype.fill` with a byte-array value: fills [start, end) of any Uint8Array
 * with the value repeated from its first byte (native code: a copy of the value, then doubling
 * copies). fillAt takes it for ranges of at least FILL_NATIVE_MIN bytes, where it costs less
 * than one period in JS and a copyWithin call per doubling; under that the JS path is cheaper.
 */
const BUFFER_FILL = Buffer.prototype.fill as (this: Uint8Array, value: Uint8Array, start: number, end: number) => Uint8Array;
const FILL_NATIVE_MIN = 256;

/**
 * invalidate(p, …, off, 1) for a page whose every decoded offset is among at[0..n) and that
 * no instruction runs into: drops the instructions overlapping byte `off`.
 */
function dropOverlapping(p: Page, code: (Insn | undefined)[], at: Int32Array, n: number, off: number): void {
  codeChanged(p);
  for (let i = 0; i < n; i++) {
    const s = at[i];
    if (s <= off && s >= off - 14) {
      const ins = code[s];
      if (ins !== undefined && s + ins.len > off) code[s] = undefined;
    }
  }
}

/** Undone writes on pages with decoded code whose invalidation rollback puts off to its end (see rollback): page object, key, offset, size. */
const LATE: (Page | null)[] = [null, null, null, null];
const LATE_KEY = new Float64Array(4);
const LATE_OFF = new Int32Array(4);
const LATE_SIZE = new Int32Array(4);

/** Pages a rollback will recycle (see rollback); a few are enough, the rest take the general path. */
const FRESH: (Page | null)[] = [null, null, null, null, null, null, null, null];

function isFresh(p: Page, n: number): boolean {
  for (let k = 0; k < n; k++) if (FRESH[k] === p) return true;
  return false;
}

function keyOf(addr: bigint): number {
  return Number(BigInt.asUintN(64, addr) >> 12n);
}

function hexKey(key: number): string {
  return "0x" + (BigInt(key) << 12n).toString(16);
}

function hexAddr(lo: number, hi: number): string {
  return "0x" + toBig(lo, hi).toString(16);
}
