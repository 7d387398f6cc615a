import type { Cpu } from "./cpu.js";
import { REG_NAMES_32, REG_NAMES_64 } from "./cpu.js";
import type { MemorySnapshot } from "./memory.js";
import { freshSegGen, SEG_NAMES, SEG_UNUSABLE, UNUSABLE_HI } from "./segments.js";
import { toBig } from "./u64.js";

/**
 * The segment state in CpuState.seg: per segment register (ES CS SS DS FS GS) its selector
 * [0..5], base [6..11], limit [12..17] and attributes [18..23]; then GDTR (on, base, limit)
 * [24..26] and LDTR (on, selector, base, limit) [27..30].
 */
export const SEG_STATE_LEN = 31;

/** Architectural CPU state, copied out (plain data). */
export interface CpuState {
  readonly bits: 32 | 64;
  readonly lo: Int32Array;
  readonly hi: Int32Array;
  readonly ripLo: number;
  readonly ripHi: number;
  readonly flags: number;
  readonly cs: number;
  readonly ss: number;
  /** Segment registers with their hidden parts, GDTR and LDTR (layout: SEG_STATE_LEN). */
  readonly seg: Int32Array;
  /**
   * The CPU's segment-state generation when saved (Cpu.segGen; equal generations, equal
   * segment registers), for reusable buffers that skip unchanged registers. Snapshots leave
   * it out, so equal states compare equal.
   */
  readonly segGen?: number;
  readonly cr2: bigint;
  readonly halted: boolean;
}

/** Copies a CPU's segment state into `out` (SEG_STATE_LEN int32s). */
export function saveSegments(c: Cpu, out: Int32Array): Int32Array {
  const sel = c.segSel, base = c.segBase, limit = c.segLimit, attr = c.segAttr;
  for (let i = 0; i < 6; i++) { out[i] = sel[i]; out[6 + i] = base[i]; out[12 + i] = limit[i]; out[18 + i] = attr[i]; }
  out[24] = c.gdtrOn ? 1 : 0; out[25] = c.gdtrBase; out[26] = c.gdtrLimit;
  out[27] = c.ldtrOn ? 1 : 0; out[28] = c.ldtrSel; out[29] = c.ldtrBase; out[30] = c.ldtrLimit;
  return out;
}

/** Whether the CPU's segment state equals `s` (as saveSegments writes it). */
export function sameSegments(c: Cpu, s: Int32Array): boolean {
  const sel = c.segSel, base = c.segBase, limit = c.segLimit, attr = c.segAttr;
  for (let i = 0; i < 6; i++) if (sel[i] !== s[i] || base[i] !== s[6 + i] || limit[i] !== s[12 + i] || attr[i] !== s[18 + i]) return false;
  return (c.gdtrOn ? 1 : 0) === s[24] && c.gdtrBase === s[25] && c.gdtrLimit === s[26] &&
    (c.ldtrOn ? 1 : 0) === s[27] && c.ldtrSel === s[28] && c.ldtrBase === s[29] && c.ldtrLimit === s[30];
}

/**
 * Puts segment state saved by saveSegments back. `gen` is the generation it was saved with:
 * nothing to do when the CPU still has it; without one, a state equal to the CPU's keeps the
 * CPU's generation.
 */
export function loadSegments(c: Cpu, s: Int32Array, gen?: number): void {
  if (gen !== undefined ? gen === c.segGen : sameSegments(c, s)) { c.selectCs(s[1]); return; }
  const sel = c.segSel, base = c.segBase, limit = c.segLimit, attr = c.segAttr, hi = c.segHi;
  for (let i = 0; i < 6; i++) {
    sel[i] = s[i]; base[i] = s[6 + i]; limit[i] = s[12 + i]; attr[i] = s[18 + i];
    hi[i] = c.bits === 32 && i !== 1 && i !== 2 && (s[18 + i] & SEG_UNUSABLE) !== 0 ? UNUSABLE_HI : 0;
  }
  c.ssBase = base[2];
  c.setGdtr(s[24] !== 0, s[25], s[26]);
  c.setLdtr(s[28], s[27] !== 0, s[29], s[30]);
  c.selectCs(s[1]);
  c.segGen = gen ?? freshSegGen();
}

export function saveCpu(c: Cpu): CpuState {
  return {
    bits: c.bits, lo: c.lo.slice(), hi: c.hi.slice(), ripLo: c.ripLo, ripHi: c.ripHi,
    flags: c.flags, cs: c.cs, ss: c.ss, seg: saveSegments(c, new Int32Array(SEG_STATE_LEN)), cr2: c.cr2, halted: c.halted,
  };
}

/**
 * dst[0..15] = src[0..15] when both hold 16 (a CPU's GPR halves), else dst.set(src) (its
 * errors included). Unrolled: TypedArray.prototype.set is a builtin call, and a loop over
 * typed arrays reloads their length and data pointer per element in this V8 (≈ 3× unrolled).
 */
export function copyRegs(d: Int32Array, s: Int32Array): void {
  if (d.length !== 16 || s.length !== 16) { d.set(s); return; }
  d[0] = s[0]; d[1] = s[1]; d[2] = s[2]; d[3] = s[3]; d[4] = s[4]; d[5] = s[5]; d[6] = s[6]; d[7] = s[7];
  d[8] = s[8]; d[9] = s[9]; d[10] = s[10]; d[11] = s[11]; d[12] = s[12]; d[13] = s[13]; d[14] = s[14]; d[15] = s[15];
}

/**
 * 16 int32s (a CPU's GPR halves) seen as 8 float64s, for copies at half the element accesses
 * (copy64, shift64); null when `a` is not 16 long at an 8-aligned byte offset. A float64 moved
 * from one typed array to another keeps its bits in this V8 on x64, NaNs included (no value
 * is computed: loads and stores, or a HeapNumber in between below TurboFan):
 * properties/engine-live.test.ts checks signalling and quiet NaN patterns through the tiers.
 */
export function wideView(a: Int32Array): Float64Array | null {
  return a.length === 16 && (a.byteOffset & 7) === 0 ? new Float64Array(a.buffer, a.byteOffset, 8) : null;
}

/** d[0..7] = s[0..7] (copyRegs through wideView views; unrolled, as copyRegs). */
export function copy64(d: Float64Array, s: Float64Array): void {
  d[0] = s[0]; d[1] = s[1]; d[2] = s[2]; d[3] = s[3]; d[4] = s[4]; d[5] = s[5]; d[6] = s[6]; d[7] = s[7];
}

/**
 * shiftRegs through wideView views: save = cur, cur = next (8 elements each). Stores into
 * `cur` every time: comparing float64s first would take -0 for +0 and NaN for unequal.
 */
export function shift64(save: Float64Array, cur: Float64Array, next: Float64Array): void {
  save[0] = cur[0]; cur[0] = next[0]; save[1] = cur[1]; cur[1] = next[1];
  save[2] = cur[2]; cur[2] = next[2]; save[3] = cur[3]; cur[3] = next[3];
  save[4] = cur[4]; cur[4] = next[4]; save[5] = cur[5]; cur[5] = next[5];
  save[6] = cur[6]; cur[6] = next[6]; save[7] = cur[7]; cur[7] = next[7];
}

/**
 * save[0..15] = cur[0..15], then cur[0..15] = next[0..15] (`copyRegs(save, cur);
 * copyRegs(cur, next)` when all three hold 16), unrolled, storing into `cur` only where it
 * differs: a run changes few registers, and each typed-array store costs about what a
 * load does here.
 */
export function shiftRegs(save: Int32Array, cur: Int32Array, next: Int32Array): void {
  if (save.length !== 16 || cur.length !== 16 || next.length !== 16) { copyRegs(save, cur); copyRegs(cur, next); return; }
  let a: number, b: number;
  a = cur[0]; save[0] = a; b = next[0]; if (a !== b) cur[0] = b;
  a = cur[1]; save[1] = a; b = next[1]; if (a !== b) cur[1] = b;
  a = cur[2]; save[2] = a; b = next[2]; if (a !== b) cur[2] = b;
  a = cur[3]; save[3] = a; b = next[3]; if (a !== b) cur[3] = b;
  a = cur[4]; save[4] = a; b = next[4]; if (a !== b) cur[4] = b;
  a = cur[5]; save[5] = a; b = next[5]; if (a !== b) cur[5] = b;
  a = cur[6]; save[6] = a; b = next[6]; if (a !== b) cur[6] = b;
  a = cur[7]; save[7] = a; b = next[7]; if (a !== b) cur[7] = b;
  a = cur[8]; save[8] = a; b = next[8]; if (a !== b) cur[8] = b;
  a = cur[9]; save[9] = a; b = next[9]; if (a !== b) cur[9] = b;
  a = cur[10]; save[10] = a; b = next[10]; if (a !== b) cur[10] = b;
  a = cur[11]; save[11] = a; b = next[11]; if (a !== b) cur[11] = b;
  a = cur[12]; save[12] = a; b = next[12]; if (a !== b) cur[12] = b;
  a = cur[13]; save[13] = a; b = next[13]; if (a !== b) cur[13] = b;
  a = cur[14]; save[14] = a; b = next[14]; if (a !== b) cur[14] = b;
  a = cur[15]; save[15] = a; b = next[15]; if (a !== b) cur[15] = b;
}

export function loadCpu(c: Cpu, s: CpuState): void {
  copyRegs(c.lo, s.lo); copyRegs(c.hi, s.hi);
  c.ripLo = s.ripLo; c.ripHi = s.ripHi;
  c.flags = s.flags;
  loadCpuRest(c, s);
}

/**
 * loadCpu without the GPRs, RIP and RFLAGS: for a caller that sets every one of those
 * itself before anything reads them (the engine's reset before layCase of a 64-bit case
 * with all 16 registers: setCaseRegs writes all but rSP, layCase rSP, RIP and RFLAGS).
 * Everything else loadCpu puts back — the segment state, CR2, the halted flag — and the
 * refetch.
 */
export function loadCpuRest(c: Cpu, s: CpuState): void {
  loadSegments(c, s.seg, s.segGen);
  c.cr2 = s.cr2; c.halted = s.halted;
  c.refetch();
}

/** A whole machine frozen: CPU states and memory (pages shared copy-on-write). */
export interface MachineSnapshot {
  readonly cpus: readonly CpuState[];
  readonly mem: MemorySnapshot;
}

export interface RegisterDiff { readonly name: string; readonly a: bigint; readonly b: bigint }
export interface MemoryDiff { readonly addr: bigint; readonly a: Uint8Array | null; readonly b: Uint8Array | null }

/** Differences between two machine states: registers by name, memory as differing byte runs. */
export interface StateDiff {
  readonly registers: RegisterDiff[];
  readonly memory: MemoryDiff[];
  readonly equal: boolean;
}

/** Options for comparing: which flag bits count, and which memory to leave out. */
export interface DiffOptions {
  /** RFLAGS bits compared (default: all). */
  readonly flagsMask?: number;
  /** Memory to ignore, e.g. dead bytes below a stack pointer: [start, end). */
  readonly ignore?: readonly (readonly [bigint, bigint])[];
}

function regList(s: CpuState, mask: number): [string, bigint][] {
  const names = s.bits === 64 ? REG_NAMES_64 : REG_NAMES_32;
  const out: [string, bigint][] = [];
  for (let i = 0; i < names.length; i++) out.push([names[i], s.bits === 64 ? toBig(s.lo[i], s.hi[i]) : BigInt(s.lo[i] >>> 0)]);
  out.push([s.bits === 64 ? "rip" : "eip", s.bits === 64 ? toBig(s.ripLo, s.ripHi) : BigInt(s.ripLo >>> 0)]);
  out.push([s.bits === 64 ? "rflags" : "eflags", BigInt((s.flags & mask) >>> 0)]);
  out.push(["cs", BigInt(s.cs)], ["ss", BigInt(s.ss)]);
  for (const i of [3, 0, 4, 5]) out.push([SEG_NAMES[i], BigInt(s.seg[i])]);
  for (let i = 0; i < 6; i++) {
    out.push([`${SEG_NAMES[i]}.base`, BigInt(s.seg[6 + i] >>> 0)], [`${SEG_NAMES[i]}.limit`, BigInt(s.seg[12 + i] >>> 0)], [`${SEG_NAMES[i]}.attr`, BigInt(s.seg[18 + i] >>> 0)]);
  }
  out.push(["gdtr.base", s.seg[24] === 0 ? -1n : BigInt(s.seg[25] >>> 0)], ["gdtr.limit", BigInt(s.seg[26])], ["ldtr", BigInt(s.seg[28])]);
  return out;
}

/** Compares CPU states register by register. */
export function diffCpu(a: CpuState, b: CpuState, flagsMask = 0xffffffff): RegisterDiff[] {
  const ra = regList(a, flagsMask), rb = regList(b, flagsMask);
  const out: RegisterDiff[] = [];
  for (let i = 0; i < ra.length; i++) if (ra[i][1] !== rb[i][1]) out.push({ name: ra[i][0], a: ra[i][1], b: rb[i][1] });
  return out;
}

/**
 * Compares two memory snapshots. Pages that are the same object are equal without a look
 * (copy-on-write makes this the common case), so a diff costs only the pages written.
 */
export function diffMemory(a: MemorySnapshot, b: MemorySnapshot, ignore: readonly (readonly [bigint, bigint])[] = []): MemoryDiff[] {
  const out: MemoryDiff[] = [];
  // only pages that are not the same object can differ (copy-on-write)
  const keys: number[] = [];
  for (const [k, pa] of a.pages) if (b.pages.get(k) !== pa) keys.push(k);
  for (const k of b.pages.keys()) if (!a.pages.has(k)) keys.push(k);
  keys.sort((x, y) => x - y);
  for (const k of keys) {
    const pa = a.pages.get(k), pb = b.pages.get(k);
    if (pa === pb) continue;
    const base = BigInt(k) << 12n;
    // the ignored byte ranges of this page, as [start, end) offsets
    const skip: [number, number][] = [];
    for (const [s, e] of ignore) {
      if (e <= base || s >= base + 4096n) continue;
      skip.push([s <= base ? 0 : Number(s - base), e >= base + 4096n ? 4096 : Number(e - base)]);
    }
    const ignored = (i: number): boolean => skip.some(([s, e]) => i >= s && i < e);
    if (!pa || !pb) {
      if (!ignored(0)) out.push({ addr: base, a: pa ? pa.data.slice() : null, b: pb ? pb.data.slice() : null });
      continue;
    }
    const da = pa.data, db = pb.data;
    // fast scan by 32-bit words; bytes only where words differ
    const wa = new Int32Array(da.buffer, da.byteOffset, 1024), wb = new Int32Array(db.buffer, db.byteOffset, 1024);
    let i = 0;
    while (i < 4096) {
      if ((i & 3) === 0 && wa[i >> 2] === wb[i >> 2]) { i += 4; continue; }
      if (da[i] === db[i] || ignored(i)) { i++; continue; }
      let j = i;
      while (j < 4096 && da[j] !== db[j] && !ignored(j)) j++;
      out.push({ addr: base + BigInt(i), a: da.slice(i, j), b: db.slice(i, j) });
      i = j;
    }
  }
  return out;
}

export function diffStates(a: MachineSnapshot, b: MachineSnapshot, opts: DiffOptions = {}): StateDiff {
  const registers: RegisterDiff[] = [];
  const n = Math.max(a.cpus.length, b.cpus.length);
  for (let i = 0; i < n; i++) {
    const ca = a.cpus[i], cb = b.cpus[i];
    if (!ca || !cb) continue;
    for (const d of diffCpu(ca, cb, opts.flagsMask)) registers.push(n > 1 ? { ...d, name: `cpu${i}.${d.name}` } : d);
  }
  const memory = diffMemory(a.mem, b.mem, opts.ignore);
  return { registers, memory, equal: registers.length === 0 && memory.length === 0 };
}

