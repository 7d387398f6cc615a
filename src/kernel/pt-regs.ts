import type { Machine } from "../machine/machine.js";
import type { Memory } from "../machine/memory.js";
import { hiOf, loOf, toBig } from "../machine/u64.js";

/** struct pt_regs field offsets, x86-64 (arch/x86/include/asm/ptrace.h; same v5.1–v6.x). */
export const PT_REGS_64 = {
  r15: 0, r14: 8, r13: 16, r12: 24, bp: 32, bx: 40, r11: 48, r10: 56, r9: 64, r8: 72,
  ax: 80, cx: 88, dx: 96, si: 104, di: 112, orig_ax: 120, ip: 128, cs: 136, flags: 144, sp: 152, ss: 160,
} as const;
export const SIZEOF_PT_REGS_64 = 168;

/** struct pt_regs field offsets, i386 (arch/x86/include/asm/ptrace.h; same v5.2–v6.x). */
export const PT_REGS_32 = {
  bx: 0, cx: 4, dx: 8, si: 12, di: 16, bp: 20, ax: 24, ds: 28, es: 32, fs: 36, gs: 40,
  orig_ax: 44, ip: 48, cs: 52, flags: 56, sp: 60, ss: 64,
} as const;
export const SIZEOF_PT_REGS_32 = 68;

export type PtRegsField = keyof typeof PT_REGS_64 | keyof typeof PT_REGS_32;

/**
 * A typed view of a struct pt_regs at an address in simulated memory. Reads and writes go
 * through the machine's memory (so they fault, are watched, and land where the kernel's
 * would); nothing is cached. Field access works on int32 halves: `lo`/`hi` and `setHalves`
 * are the BigInt-free path host code takes on every trap; `get`/`set` and the bigint
 * accessors are the same reads and writes at the API edge.
 */
export class PtRegs {
  private readonly lo: number;
  private readonly hi: number;
  private readonly table: Record<string, number>;
  /**
   * The word size, 8 or 4: a small-integer field. (A boolean field costs V8 a full truthiness
   * test on every use; this view is read on every trap.)
   */
  private readonly size: 4 | 8;
  // the offsets of the fields every trap reads and writes (set once: no table or module load per access)
  private readonly ipOff: number;
  private readonly spOff: number;
  private readonly csOff: number;
  private readonly flagsOff: number;
  /** The machine's memory (every field access goes there). */
  private readonly mem: Memory;
  /** High half of the field last read with lo32. */
  rhi = 0;
  /**
   * While a handler reads fields before it writes any (beginReads … endReads): the page
   * holding the whole struct as int32 words, and the struct's first word there; null otherwise.
   */
  private w: Int32Array | null = null;
  private wq = 0;

  /** The view at `addr`, or, given `hi`, at the int32 halves (addr, hi) (hi ignored on 32-bit). */
  constructor(readonly m: Machine, addr: bigint | number, hi = 0) {
    const wide = m.bits === 64;
    this.size = wide ? 8 : 4;
    this.mem = m.mem;
    if (typeof addr === "number") {
      this.lo = addr | 0;
      this.hi = wide ? hi | 0 : 0;
    } else {
      const a = BigInt.asUintN(m.bits, addr);
      this.lo = loOf(a);
      this.hi = wide ? hiOf(a) : 0;
    }
    const t = wide ? PT_REGS_64 : PT_REGS_32;
    this.table = t;
    this.ipOff = t.ip; this.spOff = t.sp; this.csOff = t.cs; this.flagsOff = t.flags;
  }

  /** The view at the address (lo, hi) (int32 halves; hi ignored on 32-bit). */
  static atHalves(m: Machine, lo: number, hi: number): PtRegs {
    return new PtRegs(m, lo, hi);
  }

  /** Whether this is the view at the int32 halves (lo, hi) (hi ignored on 32-bit). */
  isAt(lo: number, hi: number): boolean {
    return this.lo === (lo | 0) && this.hi === (this.size === 8 ? hi | 0 : 0);
  }

  /** The address of the struct. */
  get addr(): bigint { return this.size === 8 ? toBig(this.lo, this.hi) : BigInt(this.lo >>> 0); }
  get bits(): 32 | 64 { return this.m.bits; }
  get word(): 4 | 8 { return this.size; }

  offsetOf(f: PtRegsField): number {
    // the fields every trap reads and writes first, by comparison with the literal (a keyed
    // load with a variable name is a dictionary look-up in V8)
    if (f === "ip") return this.ipOff;
    if (f === "sp") return this.spOff;
    if (f === "cs") return this.csOff;
    if (f === "flags") return this.flagsOff;
    const o = this.table[f];
    if (o === undefined) throw new RangeError(`pt_regs has no field ${f} on ${this.m.bits}-bit`);
    return o;
  }

  /** Address of a field (`&regs->f`). */
  at(f: PtRegsField): bigint { return this.addr + BigInt(this.offsetOf(f)); }

  // Field access goes through int32 halves, not BigInt arithmetic: cheaper, and it keeps
  // TurboFan away from BigInt64 lowering paths that crash Node 20's V8 (see NOTES.md).

  /** Low half of a field (the whole field on 32-bit); the high half is then in `rhi`. */
  lo32(f: PtRegsField): number {
    return this.readAt(this.offsetOf(f));
  }

  /** Writes a field from int32 halves (hi ignored on 32-bit). */
  setHalves(f: PtRegsField, lo: number, hi: number): void {
    this.writeAt(this.offsetOf(f), lo, hi);
  }

  // The fields every trap reads and writes, without the field look-up (the same accesses as
  // lo32/setHalves: small, so that V8 inlines them into the handlers).
  /** lo32("ip"). */
  ipLo(): number { return this.readAt(this.ipOff); }
  /** lo32("sp"). */
  spLo(): number { return this.readAt(this.spOff); }
  /** lo32("cs"). */
  csLo(): number { return this.readAt(this.csOff); }
  /** setHalves("ip", lo, hi). */
  setIp(lo: number, hi: number): void { this.writeAt(this.ipOff, lo, hi); }
  /** setHalves("sp", lo, hi). */
  setSp(lo: number, hi: number): void { this.writeAt(this.spOff, lo, hi); }

  /**
   * Starts a handler's reads (its fields read before it writes any: user_mode, regs->ip,
   * regs->sp): resolves the page holding the whole struct once, when reading it word by word
   * is exactly what mem.read64/read32 per field would do — no read watch (it would see each
   * read), the struct word-aligned within one page (so no later field read can fault once
   * this look-up did not). The look-up is made at field `first`, the one the handler reads
   * first: its fault, if any, is that read's. Until endReads or the first write through this
   * view (a write may copy the page), field reads are word loads. Every trap reads pt_regs
   * 4 times (cs, ip twice, sp): ≈ 160 host instructions a read through Memory, measured.
   */
  beginReads(first: PtRegsField): void {
    this.openAt(this.offsetOf(first));
  }

  /** beginReads("cs"): user_mode(regs) first, as every int3 handler (small, to be inlined there). */
  beginReadsCs(): void {
    this.openAt(this.csOff);
  }

  /** beginReads with the first field read at byte offset `first`. */
  private openAt(first: number): void {
    const mem = this.mem, lo = this.lo;
    const o = lo & 4095;
    this.w = null;
    if (mem.readWatch !== null || (o & 3) !== 0 || o > 4096 - (this.size === 8 ? SIZEOF_PT_REGS_64 : SIZEOF_PT_REGS_32)) return;
    const at = (lo >>> 0) + first; // (in the struct's page: no carry into hi)
    this.w = mem.readPage(at | 0, this.hi, false, false).i32;
    this.wq = o >> 2;
  }

  /** Ends the reads beginReads started (field reads go through Memory again). */
  endReads(): void { this.w = null; }

  /** The word at byte offset `off` of the struct: its low half, the high half in `rhi` (0 on 32-bit). */
  private readAt(off: number): number {
    const w = this.w;
    if (w !== null) {
      const q = this.wq + (off >> 2);
      if (this.size === 4) { this.rhi = 0; return w[q]; }
      this.rhi = w[q + 1];
      return w[q];
    }
    const s = (this.lo >>> 0) + off;
    const mem = this.mem;
    if (this.size === 4) { this.rhi = 0; return mem.read32(s | 0, 0); }
    const v = mem.read64(s | 0, (this.hi + (s >= 4294967296 ? 1 : 0)) | 0);
    this.rhi = mem.rhi;
    return v;
  }

  /** Writes the word at byte offset `off` from int32 halves (hi ignored on 32-bit). */
  private writeAt(off: number, lo: number, hi: number): void {
    this.w = null;
    const s = (this.lo >>> 0) + off;
    const mem = this.mem;
    if (this.size === 4) mem.write32(s | 0, 0, lo);
    else mem.write64(s | 0, (this.hi + (s >= 4294967296 ? 1 : 0)) | 0, lo, hi);
  }

  get(f: PtRegsField): bigint {
    const l = this.lo32(f);
    return this.size === 8 ? toBig(l, this.rhi) : BigInt(l >>> 0);
  }

  set(f: PtRegsField, v: bigint): void {
    this.setHalves(f, loOf(v), this.size === 8 ? hiOf(v) : 0);
  }

  get ip(): bigint { return this.get("ip"); }
  set ip(v: bigint) { this.set("ip", v); }
  get sp(): bigint { return this.get("sp"); }
  set sp(v: bigint) { this.set("sp", v); }
  get flags(): bigint { return this.get("flags"); }
  get cs(): bigint { return this.get("cs"); }
}

/** user_mode(regs): CS RPL == 3 (arch/x86/include/asm/ptrace.h, !CONFIG_X86_32 VM86 case aside). */
export function userMode(regs: PtRegs): boolean {
  return (regs.csLo() & 3) === 3;
}
