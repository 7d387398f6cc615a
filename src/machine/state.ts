import type { Cpu } from "./cpu.js";
import { REG_NAMES_32, REG_NAMES_64 } from "./cpu.js";
import type { MemorySnapshot } from "./memory.js";
import { toBig } from "./u64.js";

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
  readonly cr2: bigint;
  readonly halted: boolean;
}

export function saveCpu(c: Cpu): CpuState {
  return {
    bits: c.bits, lo: c.lo.slice(), hi: c.hi.slice(), ripLo: c.ripLo, ripHi: c.ripHi,
    flags: c.flags, cs: c.cs, ss: c.ss, cr2: c.cr2, halted: c.halted,
  };
}

export function loadCpu(c: Cpu, s: CpuState): void {
  c.lo.set(s.lo); c.hi.set(s.hi);
  c.ripLo = s.ripLo; c.ripHi = s.ripHi;
  c.flags = s.flags; c.setCs(s.cs); c.ss = s.ss; c.cr2 = s.cr2; c.halted = s.halted;
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

