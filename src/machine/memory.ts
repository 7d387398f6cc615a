import { UsageError } from "../errors.js";
import { CpuFault, PF, Vec } from "./events.js";
import { freshEpoch, Page, PAGE_SIZE, Perm } from "./page.js";
import { isCanonical, pageKey, toBig } from "./u64.js";

const TLB = 64;
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
  pages = new Map<number, Page>();
  epoch = freshEpoch();
  /** Bumped when a page object holding decoded code is replaced or remapped. */
  gen = 0;
  /** Accesses are made at CPL 3 (user) rather than supervisor. */
  user = false;
  watch: WriteWatch | null = null;
  /** Sees every data read (not instruction fetches): address and size. */
  readWatch: WriteWatch | null = null;

  private readonly rKey = new Float64Array(TLB).fill(-1);
  private readonly rPage: (Page | null)[] = new Array<Page | null>(TLB).fill(null);
  private readonly wKey = new Float64Array(TLB).fill(-1);
  private readonly wPage: (Page | null)[] = new Array<Page | null>(TLB).fill(null);

  // ---- mapping -------------------------------------------------------------------------

  /** Maps `size` bytes (rounded out to pages) at `addr` with `perm`; fresh pages are zero. */
  map(addr: bigint, size: number, perm: number): void {
    this.forPages(addr, size, (key) => {
      const old = this.pages.get(key);
      if (old) {
        if (old.perm !== perm) this.replace(key, new Page(old.data.slice(), perm, this.epoch), true);
      } else {
        this.pages.set(key, new Page(new Uint8Array(PAGE_SIZE), perm, this.epoch));
      }
    });
    this.flush();
  }

  /** Changes the permissions of mapped pages (unmapped pages in the range are an error). */
  protect(addr: bigint, size: number, perm: number): void {
    this.forPages(addr, size, (key) => {
      const old = this.pages.get(key);
      if (!old) throw new UsageError(`protect: page ${hexKey(key)} is not mapped`);
      this.replace(key, new Page(old.data.slice(), perm, this.epoch), true);
    });
    this.flush();
  }

  /** Removes pages; later accesses take #PF (not present). */
  unmap(addr: bigint, size: number): void {
    this.forPages(addr, size, (key) => {
      this.dropCode(key - 1);
      this.pages.delete(key);
    });
    this.gen++;
    this.flush();
  }

  isMapped(addr: bigint): boolean {
    return this.pages.has(keyOf(addr));
  }

  permOf(addr: bigint): number | undefined {
    return this.pages.get(keyOf(addr))?.perm;
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
    this.pages.set(key, p);
    this.gen++;
  }

  private dropCode(key: number): void {
    const p = this.pages.get(key);
    if (p && p.code) {
      p.code = null;
      this.gen++;
    }
  }

  /** Forgets cached translations (after a mapping, privilege or snapshot change). */
  flush(): void {
    this.rKey.fill(-1);
    this.wKey.fill(-1);
  }

  // ---- snapshots -----------------------------------------------------------------------

  snapshot(): MemorySnapshot {
    const snap = { pages: new Map(this.pages) };
    this.epoch = freshEpoch(); // every current page is now shared with the snapshot
    this.flush();
    return snap;
  }

  restore(snap: MemorySnapshot): void {
    this.pages = new Map(snap.pages);
    this.epoch = freshEpoch();
    this.gen++;
    this.flush();
  }

  // ---- page lookup ---------------------------------------------------------------------

  /** The page for a fetch/read at the current privilege, or a thrown #PF/#GP. */
  readPage(lo: number, hi: number, fetch: boolean, stack: boolean): Page {
    const key = (hi >>> 0) * 1048576 + (lo >>> 12);
    const i = (lo >>> 12) & (TLB - 1);
    if (!fetch && this.rKey[i] === key) return this.rPage[i] as Page;
    if (!isCanonical(lo, hi)) throw new CpuFault(stack ? Vec.SS : Vec.GP, 0, undefined, `non-canonical address ${hexAddr(lo, hi)}`);
    const p = this.pages.get(key);
    const u = this.user ? PF.U : 0;
    const why = fetch ? PF.I : 0;
    if (p === undefined) throw new CpuFault(Vec.PF, u | why, toBig(lo, hi));
    if (this.user && !(p.perm & Perm.U)) throw new CpuFault(Vec.PF, PF.P | u | why, toBig(lo, hi));
    if (fetch) {
      if (!(p.perm & Perm.X)) throw new CpuFault(Vec.PF, PF.P | u | PF.I, toBig(lo, hi));
      return p;
    }
    this.rKey[i] = key;
    this.rPage[i] = p;
    return p;
  }

  /** The page for a write, copied first if shared with a snapshot. */
  writePage(lo: number, hi: number, stack: boolean): Page {
    const key = (hi >>> 0) * 1048576 + (lo >>> 12);
    const i = (lo >>> 12) & (TLB - 1);
    if (this.wKey[i] === key) return this.wPage[i] as Page;
    if (!isCanonical(lo, hi)) throw new CpuFault(stack ? Vec.SS : Vec.GP, 0, undefined, `non-canonical address ${hexAddr(lo, hi)}`);
    let p = this.pages.get(key);
    const u = this.user ? PF.U : 0;
    if (p === undefined) throw new CpuFault(Vec.PF, PF.W | u, toBig(lo, hi));
    if ((this.user && !(p.perm & Perm.U)) || !(p.perm & Perm.W)) throw new CpuFault(Vec.PF, PF.P | PF.W | u, toBig(lo, hi));
    if (p.epoch !== this.epoch) {
      const had = p.code !== null;
      p = p.copyFor(this.epoch);
      this.pages.set(key, p);
      if (had) this.gen++;
      this.rKey[i] = -1;
    }
    if (p.code === null && !p.crossIn) {
      this.wKey[i] = key;
      this.wPage[i] = p;
    }
    return p;
  }

  /** Called when code is decoded into `p`: its writes must now take the invalidating path. */
  codeAdded(): void {
    this.wKey.fill(-1);
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
    p.data[off] = v;
    if (p.code !== null || p.crossIn) this.invalidate(p, lo, hi, off, 1);
    if (this.watch !== null) this.watch(lo, hi, 1);
  }

  write16(lo: number, hi: number, v: number, stack = false): void {
    const off = lo & 4095;
    if (off > 4094) return this.writeSlow(lo, hi, 2, v, 0, stack);
    const p = this.writePage(lo, hi, stack);
    p.dv.setUint16(off, v & 0xffff, true);
    if (p.code !== null || p.crossIn) this.invalidate(p, lo, hi, off, 2);
    if (this.watch !== null) this.watch(lo, hi, 2);
  }

  write32(lo: number, hi: number, v: number, stack = false): void {
    const off = lo & 4095;
    if (off > 4092) return this.writeSlow(lo, hi, 4, v, 0, stack);
    const p = this.writePage(lo, hi, stack);
    p.dv.setInt32(off, v, true);
    if (p.code !== null || p.crossIn) this.invalidate(p, lo, hi, off, 4);
    if (this.watch !== null) this.watch(lo, hi, 4);
  }

  write64(lo: number, hi: number, vlo: number, vhi: number, stack = false): void {
    const off = lo & 4095;
    if (off > 4088) return this.writeSlow(lo, hi, 8, vlo, vhi, stack);
    const p = this.writePage(lo, hi, stack);
    p.dv.setInt32(off, vlo, true);
    p.dv.setInt32(off + 4, vhi, true);
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
      p.data[l & 4095] = b;
      if (p.code !== null || p.crossIn) this.invalidate(p, l, h, l & 4095, 1);
    }
    if (this.watch !== null) this.watch(lo, hi, size);
  }

  /** Drops decoded instructions overlapping [off, off+len) of p (and ones running in from the page before). */
  private invalidate(p: Page, lo: number, hi: number, off: number, len: number): void {
    const code = p.code;
    if (code !== null) {
      for (let s = Math.max(0, off - 14); s < off + len && s < PAGE_SIZE; s++) {
        const ins = code[s];
        if (ins !== undefined && s + ins.len > off) {
          code[s] = undefined;
        }
      }
    }
    if (p.crossIn && off < 15) {
      const prev = this.pages.get(pageKey(lo, hi) - 1);
      const pc = prev?.code;
      if (pc) {
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
    let k = 0;
    while (k < bytes.length) {
      const x = BigInt.asUintN(64, a + BigInt(k));
      const key = Number(x >> 12n);
      let p = this.pages.get(key);
      if (!p) throw new UsageError(`load: 0x${x.toString(16)} is not mapped`);
      if (p.epoch !== this.epoch) {
        p = p.copyFor(this.epoch);
        this.pages.set(key, p);
      }
      const off = Number(x & 4095n);
      const n = Math.min(bytes.length - k, 4096 - off);
      if (bytes instanceof Uint8Array) p.data.set(bytes.subarray(k, k + n), off);
      else for (let i = 0; i < n; i++) p.data[off + i] = bytes[k + i];
      if (p.code) this.dropCode(key);
      if (off < 15) this.dropCode(key - 1);
      k += n;
    }
    this.gen++;
    this.flush();
  }

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
