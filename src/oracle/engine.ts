import { Int3bedError } from "../errors.js";
import type { Cpu } from "../machine/cpu.js";
import { Journal } from "../machine/journal.js";
import type { TextPokeLoc } from "../kernel/kernel.js";
import type { Machine } from "../machine/machine.js";
import { copy64, copyRegs, type CpuState, diffCpu, diffMemory, loadCpu, loadCpuRest, type MachineSnapshot, type MemoryDiff, type RegisterDiff, sameSegments, saveSegments, SEG_STATE_LEN, shift64, shiftRegs, type StateDiff, wideView } from "../machine/state.js";
import { type Bench, COOKIE, type EmuCase } from "./emulation.js";
import { diffRuns, type KeyRanges, remaps, SegmentBuffer, segBytes } from "./segment.js";

/** A CPU state in reusable buffers. */
class CpuBuffer implements CpuState {
  bits: 32 | 64 = 64;
  readonly lo = new Int32Array(16);
  readonly hi = new Int32Array(16);
  /** lo and hi as 8 float64s each (copy64). */
  readonly lo64 = new Float64Array(this.lo.buffer, 0, 8);
  readonly hi64 = new Float64Array(this.hi.buffer, 0, 8);
  readonly seg = new Int32Array(SEG_STATE_LEN);
  segGen = -1;
  ripLo = 0; ripHi = 0; flags = 0; cs = 0; ss = 0; cr2 = 0n; halted = false;

  /** Saves c's state; `v`: c's GPR halves as float64s (Engine.views), or null: copied as int32s. */
  save(c: Cpu, v: CpuViews | null = null): void {
    this.saveScalars(c);
    this.saveRest(c, v);
  }

  /** The part of save(c) but the GPRs and the segment state (saveRest does those); notes c's segment generation. */
  saveScalars(c: Cpu): void {
    this.bits = c.bits;
    this.ripLo = c.ripLo; this.ripHi = c.ripHi; this.flags = c.flags; this.cs = c.cs; this.ss = c.ss; this.cr2 = c.cr2; this.halted = c.halted;
    this.liveSegGen = c.segGen;
  }

  /** The rest of save(c) after saveScalars(c): the GPRs (as in save) and the segment state. */
  saveRest(c: Cpu, v: CpuViews | null = null): void {
    if (v !== null) { copy64(this.lo64, v.lo); copy64(this.hi64, v.hi); } else { copyRegs(this.lo, c.lo); copyRegs(this.hi, c.hi); }
    this.saveSegs(c);
  }

  /** c's segment state, only when it changed since this buffer last took it. */
  private saveSegs(c: Cpu): void {
    if (this.segGen !== c.segGen) { saveSegments(c, this.seg); this.segGen = c.segGen; }
  }

  /** c's segment generation at saveScalars. */
  liveSegGen = -1;

  /** Whether c still has what saveScalars(c) took from it (and its segment generation). */
  scalarsOf(c: Cpu): boolean {
    return this.bits === c.bits && this.ripLo === c.ripLo && this.ripHi === c.ripHi && this.flags === c.flags && this.cs === c.cs && this.ss === c.ss &&
      this.cr2 === c.cr2 && this.halted === c.halted && this.liveSegGen === c.segGen;
  }

  /**
   * save(c), then loadCpu(c, next), in one pass over the GPRs (shiftRegs): realDone's
   * exchange of the real run's final state for the state both runs start from.
   */
  saveThenLoad(c: Cpu, next: CpuBuffer, v: CpuViews | null): void {
    this.saveScalars(c);
    if (v !== null) { shift64(this.lo64, v.lo, next.lo64); shift64(this.hi64, v.hi, next.hi64); } else { shiftRegs(this.lo, c.lo, next.lo); shiftRegs(this.hi, c.hi, next.hi); }
    this.saveSegs(c);
    c.ripLo = next.ripLo; c.ripHi = next.ripHi;
    c.flags = next.flags;
    loadCpuRest(c, next);
  }

  /** A plain copy that outlives the buffer (a snapshot's CPU state). */
  copy(): CpuState {
    // (without segGen, as every snapshot: equal states compare equal)
    return { bits: this.bits, lo: this.lo.slice(), hi: this.hi.slice(), ripLo: this.ripLo, ripHi: this.ripHi, flags: this.flags, cs: this.cs, ss: this.ss, seg: this.seg.slice(), cr2: this.cr2, halted: this.halted };
  }
}

/** A CPU's GPR halves as float64s (wideView). */
interface CpuViews { readonly lo: Float64Array; readonly hi: Float64Array }

/** The views of c's GPR halves, or null when it has none (wideView). */
function viewsOf(c: Cpu): CpuViews | null {
  const lo = wideView(c.lo), hi = wideView(c.hi);
  return lo !== null && hi !== null ? { lo, hi } : null;
}

/**
 * A TextPokeLoc armSite refills per case. The displacement is kept as int32 halves when
 * armSite has them (poke_int3_handler's model reads those), and `disp` is made from them
 * only when something reads it (the Jcc path, reports): no BigInt per case.
 */
export class ArmedLoc implements TextPokeLoc {
  addr = 0n; len = 0; opcode = 0;
  addrLo: number | undefined = 0; addrHi: number | undefined = 0;
  dispLo: number | undefined = 0; dispHi: number | undefined = 0;
  private big = 0n;

  get disp(): bigint {
    const lo = this.dispLo, hi = this.dispHi;
    return lo !== undefined && hi !== undefined ? (BigInt(hi) << 32n) + BigInt(lo >>> 0) : this.big;
  }

  /** The displacement as a BigInt (the halves then say nothing). */
  setDisp(d: bigint): void { this.big = d; this.dispLo = undefined; this.dispHi = undefined; }

  /** The displacement as int32 halves: its value modulo 2^64, hi the sign on 32-bit. */
  setDispHalves(lo: number, hi: number): void { this.dispLo = lo; this.dispHi = hi; }
}

/** Which of the engine's recorded states a snapshot is built from. */
export type Phase = "before" | "real" | "emulated";

/**
 * The check engine behind runEmuCase and the invariants: one prepared machine per Bench
 * with a write journal attached for good. A case starts by rolling the journal back to the
 * pristine state (or, if something restored a snapshot meanwhile, by restoring the
 * pristine snapshot once), so a case costs what it writes, not what the machine holds.
 * Between cases the journal and the buffers hold what is needed to look at the last case
 * again: the three CPU states, what the real run wrote (captured before it was undone), and
 * the emulated run's writes (in the journal, the machine still in its final state).
 */
export class Engine {
  readonly j = new Journal();
  /** Bumped per case: results compare it to know whether the machine still holds theirs. */
  seq = 0;
  private readonly m: Machine;
  private readonly cpuBefore: CpuBuffer[];
  private readonly cpuReal: CpuBuffer[];
  private readonly cpuEmulated: CpuBuffer[];
  readonly real = new SegmentBuffer();
  /** The journal position after the layout (where both runs start), and after the emulated run. */
  loadedMark = 0;
  private emuEnd = -1;
  /** The kernel's bp_desc between cases while nothing writes it (resetKernel). */
  readonly emptyDesc: { vec: TextPokeLoc[]; refs: number } = { vec: [], refs: 0 };
  /** armSite's text_poke_bp batch of one (refilled per case). */
  readonly armedLoc = new ArmedLoc();
  readonly armedDesc: { vec: TextPokeLoc[]; refs: number } = { vec: [this.armedLoc], refs: 0 };
  /** Ignored ranges of the current diff (reused). */
  private readonly ignore: KeyRanges = [];

  constructor(readonly b: Bench) {
    this.m = b.k.m;
    const n = this.m.cpus.length;
    const bufs = (): CpuBuffer[] => Array.from({ length: n }, () => new CpuBuffer());
    this.cpuBefore = bufs(); this.cpuReal = bufs(); this.cpuEmulated = bufs();
    this.pristineCpus = bufs();
    this.views = this.m.cpus.map(viewsOf);
    const zero: number[] = [];
    for (const base of [b.k.L.stack, b.k.L.irqStack]) {
      for (let key = keyOf(base), end = keyOf(base + BigInt(b.k.L.threadSize) - 1n); key <= end; key++) {
        const p = b.pristine.mem.pages.get(key);
        if (p !== undefined && p.data.every((x) => x === 0)) zero.push(key);
      }
    }
    this.zeroPages = Float64Array.from(zero);
    this.cookieMapped = b.pristine.mem.pages.has(keyOf(COOKIE[this.m.bits]));
    this.stackKey = keyOf(b.k.L.stack);
    this.irqKey = keyOf(b.k.L.irqStack);
  }

  /** Per CPU, its GPR halves as float64s (a CPU's arrays are for good: Cpu.lo and hi are readonly). */
  private readonly views: (CpuViews | null)[];
  private readonly stackKey: number;
  /** The pristine state has the callee's COOKIE page (prepare maps it). */
  readonly cookieMapped: boolean;
  private readonly irqKey: number;

  /**
   * Stack pages that are all zero in the pristine state (a few: scanned; a Set hashes page
   * numbers near 2^52 as heap numbers).
   */
  private readonly zeroPages: Float64Array;

  /**
   * Whether pages k0..k1 hold the pristine zeros now: all zero in the pristine state and
   * untouched since (the journal, attached and whole, starts at the pristine state — see
   * reset — and sees every write and mapping change; none of its entries names them).
   */
  pristineZero(k0: number, k1: number): boolean {
    const j = this.j;
    if (this.m.mem.journal !== j || j.broken || j.n > 16) return false;
    const z = this.zeroPages;
    for (let k = k0; k <= k1; k++) {
      let q = 0;
      while (q < z.length && z[q] !== k) q++;
      if (q === z.length) return false;
    }
    const keys = j.keys;
    for (let i = 0; i < j.n; i++) if (keys[i] >= k0 && keys[i] <= k1) return false;
    return true;
  }

  /**
   * Back to the pristine machine: memory through the journal, CPUs from the snapshot.
   * `laid`: the caller lays a 64-bit case with all 16 registers next (startLaidCase), which
   * sets every GPR, RIP and RFLAGS of CPU 0 before anything reads them: those are not
   * loaded (loadCpuRest; ≈ 400 host instructions a check).
   */
  reset(laid = false): void {
    const m = this.m, mem = m.mem, j = this.j;
    this.seq++;
    this.emuEnd = -1;
    if (mem.journal !== j || j.broken) {
      mem.journal = null;
      m.restore(this.b.pristine);
      j.clear();
      mem.journal = j;
    } else mem.rollback(0);
    const cpus = this.b.pristine.cpus, bufs = this.pristineCpus;
    for (let i = 0; i < cpus.length; i++) {
      // the pristine state through a buffer that knows its segment generation (a snapshot's
      // state does not: loading it compares the whole segment state every time)
      if (bufs[i].segGen < 0) { loadCpu(m.cpus[i], cpus[i]); bufs[i].save(m.cpus[i]); } else if (laid && i === 0 && !this.eager) loadCpuRest(m.cpus[i], bufs[i]); else loadCpu(m.cpus[i], bufs[i]);
      m.cpus[i].keepRf = false;
    }
  }

  /** The pristine CPU states as loaded once (with their segment generations). */
  private readonly pristineCpus: CpuBuffer[];

  mark(): number { return this.j.mark(); }

  /** Undoes what was written after `mark`. */
  rollback(mark: number): void {
    if (this.j.broken) throw new Int3bedError("a check run restored a snapshot or wrote more than the journal holds: it cannot be undone");
    this.m.mem.rollback(mark);
  }

  /** The buffers of `phase` (a switch: `this.cpu[phase]` is a megamorphic keyed load in V8). */
  private bufs(phase: Phase): CpuBuffer[] {
    switch (phase) {
      case "before": return this.cpuBefore;
      case "real": return this.cpuReal;
      default: return this.cpuEmulated;
    }
  }

  /** Records the CPUs' states as `phase`. */
  saveCpus(phase: Phase): void {
    const cpus = this.m.cpus, bufs = this.bufs(phase);
    for (let i = 0; i < cpus.length; i++) bufs[i].save(cpus[i], this.views[i]);
  }

  /** Puts the CPUs back in the state recorded as `phase`. */
  loadCpus(phase: Phase): void {
    const bufs = this.bufs(phase);
    for (let i = 0; i < bufs.length; i++) loadCpu(this.m.cpus[i], bufs[i]);
  }

  /** The layout is done: both runs start here. */
  laidOut(): void {
    this.loadedMark = this.j.mark();
    this.saveCpus("before");
  }

  /** The real run is done: remember what it wrote and the CPUs, then undo it. */
  realDone(): void {
    // (what the run wrote and its undo in one pass when that is all a rollback would do)
    if (!this.real.take(this.m.mem, this.j, this.loadedMark)) {
      this.real.capture(this.m.mem, this.j, this.loadedMark);
      this.rollback(this.loadedMark);
    }
    const cpus = this.m.cpus, real = this.cpuReal, before = this.cpuBefore;
    for (let i = 0; i < cpus.length; i++) real[i].saveThenLoad(cpus[i], before[i], this.views[i]);
  }

  /**
   * The emulated run is done (its writes, arming the site included, stay in the journal).
   * Its final CPUs stay in the machine: the diff compares them there (sameLive), and they
   * are copied out (emulatedCpus) only when needed — a register difference, the snapshots —
   * while the machine still holds them (holds; ≈ 1,200 host instructions a check).
   */
  emulatedDone(): void {
    // (a mark: a later write into bytes the run wrote then takes an entry of its own — the
    // journal's cover skips writes inside bytes written since the last mark — and holds sees it)
    this.emuEnd = this.j.mark();
    if (this.eager) { this.saveCpus("emulated"); this.emuSaved = true; return; }
    this.emuSaved = false;
    this.emuGen = this.m.mem.gen;
    this.emuIcount = icounts(this.m.cpus);
    // (the fields a run of no instruction may change — run(0) clears `halted` — and that tell a run apart)
    const cpus = this.m.cpus, bufs = this.cpuEmulated;
    for (let i = 0; i < cpus.length; i++) bufs[i].saveScalars(cpus[i]);
  }

  /**
   * The general paths only (the twin-engine properties' reference): emulatedDone copies
   * the CPUs, reset loads them whole.
   */
  eager = false;
  /** Whether cpuEmulated holds the emulated run's final CPUs (else the machine does, see emulatedDone). */
  private emuSaved = true;
  /** Memory's generation and the CPUs' instruction counts at emulatedDone (see holds). */
  private emuGen = 0;
  private emuIcount = 0;

  /** The emulated run's final CPUs, copied out of the machine first if not yet (callers: the machine holds them). */
  private emulatedCpus(): CpuBuffer[] {
    if (!this.emuSaved) {
      const cpus = this.m.cpus, bufs = this.cpuEmulated;
      for (let i = 0; i < cpus.length; i++) bufs[i].saveRest(cpus[i]);
      this.emuSaved = true;
    }
    return this.cpuEmulated;
  }

  /** Whether the machine's CPUs have the registers of the real run's final CPUs (sameRegs of the states). */
  private sameLive(): boolean {
    const cpus = this.m.cpus, real = this.cpuReal;
    for (let i = 0; i < cpus.length; i++) if (!sameRegsLive(real[i], cpus[i])) return false;
    return true;
  }

  /**
   * The diff of the two runs — registers of every CPU, memory where either run wrote,
   * except [stack, sp) and [site, site + 1) — taken right after the emulated run. Compares
   * whole memories instead when a run changed a mapping.
   */
  diff(stack: bigint, site: bigint, siteLo: number, siteHi: number): StateDiff {
    const registers = this.emuSaved ? cpuDiff(this.cpuReal, this.cpuEmulated) : this.sameLive() ? [] : cpuDiff(this.cpuReal, this.emulatedCpus());
    const c = this.m.cpu, j = this.j;
    const remapped = remaps(this.real) || j.mapsIn(this.loadedMark, this.emuEnd);
    let memory: MemoryDiff[];
    if (remapped || j.broken) {
      const sp = c.sp;
      const [, afterReal, afterEmu] = this.snapshots();
      memory = diffMemory(afterReal.mem, afterEmu.mem, [[stack, sp], [site, site + 1n]]);
    } else {
      const r = this.ignore;
      const spLo = c.lo[4], spHi = c.bits === 64 ? c.hi[4] : 0;
      r[0] = stack === this.b.k.L.stack ? this.stackKey : stack === this.b.k.L.irqStack ? this.irqKey : keyOf(stack); r[1] = 0; r[2] = (spHi >>> 0) * 1048576 + (spLo >>> 12); r[3] = spLo & 4095;
      const sk = (siteHi >>> 0) * 1048576 + (siteLo >>> 12), so = siteLo & 4095;
      r[4] = sk; r[5] = so; r[6] = so === 4095 ? sk + 1 : sk; r[7] = (so + 1) & 4095;
      memory = diffRuns(this.m.mem, j, this.real, this.loadedMark, this.emuEnd, r);
    }
    return { registers, memory, equal: registers.length === 0 && memory.length === 0 };
  }

  /**
   * Whether the machine still holds the case numbered `seq`, untouched since its emulated
   * run: no write since (the journal's entries), and while its CPUs are not copied out
   * (emulatedDone) none ran or had a register set through setReg (their instruction and
   * setReg counts, RIP, RFLAGS, halted, segment generation) or was loaded (memory's
   * generation: loadCpu refetches). Only a store straight into a register file (`cpu.lo`/
   * `cpu.hi`, the machine's own storage), and nothing else, goes unseen.
   */
  holds(seq: number): boolean {
    if (seq !== this.seq) return false;
    if (this.built?.seq === seq) return true;
    if (this.emuEnd !== this.j.n || this.j.broken || this.m.mem.journal !== this.j) return false;
    if (this.emuSaved) return true;
    if (this.m.mem.gen !== this.emuGen || icounts(this.m.cpus) !== this.emuIcount) return false;
    const cpus = this.m.cpus, bufs = this.cpuEmulated;
    for (let i = 0; i < cpus.length; i++) if (!bufs[i].scalarsOf(cpus[i])) return false;
    return true;
  }

  /** The snapshots already built for a case (building them ends the journal's use for it). */
  private built: { seq: number; snaps: [MachineSnapshot, MachineSnapshot, MachineSnapshot] } | undefined;

  /**
   * The three snapshots of the case the machine holds (see holds): the emulated final state
   * as it is, S by undoing the emulated run, the real final state by putting the real run's
   * bytes back on S. Leaves the machine in the emulated final state (restored from its
   * snapshot: the next case then restores the pristine state once).
   */
  snapshots(): [MachineSnapshot, MachineSnapshot, MachineSnapshot] {
    if (this.built?.seq === this.seq) return this.built.snaps;
    const m = this.m, mem = m.mem;
    this.emulatedCpus();
    const cpus = (p: Phase): CpuState[] => this.bufs(p).map((c) => c.copy());
    const emu = mem.snapshot();
    mem.rollback(this.loadedMark);
    const before = mem.snapshot();
    const r = this.real;
    for (let i = 0; i < r.n; i++) {
      if (r.sizes[i] > 0) mem.load((BigInt(r.keys[i]) << 12n) + BigInt(r.offs[i]), segBytes(r, i));
    }
    const real = mem.snapshot();
    mem.restore(emu);
    this.loadCpus("emulated");
    const snaps: [MachineSnapshot, MachineSnapshot, MachineSnapshot] = [{ cpus: cpus("before"), mem: before }, { cpus: cpus("real"), mem: real }, { cpus: cpus("emulated"), mem: emu }];
    this.built = { seq: this.seq, snaps };
    return snaps;
  }
}

function keyOf(a: bigint): number {
  return Number(BigInt.asUintN(64, a) >> 12n);
}

const engines = new WeakMap<Bench, Engine>();
/** The last Bench asked for and its engine (a WeakMap look-up per case otherwise; a run of cases uses one Bench). */
let lastBench: Bench | null = null;
let lastEngine: Engine | null = null;

/** The engine of a Bench. */
export function engineOf(b: Bench): Engine {
  if (b === lastBench && lastEngine !== null) return lastEngine;
  let e = engines.get(b);
  if (e === undefined) {
    e = new Engine(b);
    engines.set(b, e);
  }
  lastBench = b; lastEngine = e;
  return e;
}

/** The engine of a Bench, rolled back to the pristine state for a new case. */
export function startCase(b: Bench): Engine {
  const e = engineOf(b);
  e.reset();
  return e;
}

/**
 * startCase for layCase of `c` next, before anything else reads the CPUs: a 64-bit case
 * with all 16 registers leaves CPU 0's GPRs, RIP and RFLAGS to layCase (Engine.reset).
 */
export function startLaidCase(b: Bench, c: EmuCase): Engine {
  const e = engineOf(b);
  e.reset(b.k.m.bits === 64 && c.regs.length >= 16);
  return e;
}

/** What the CPUs did since: instructions run and registers set through the API (both only grow). */
function icounts(cpus: readonly Cpu[]): number {
  let n = 0;
  for (let i = 0; i < cpus.length; i++) n += cpus[i].icount + cpus[i].regSets;
  return n;
}

/** Register differences of every CPU, as diffStates names them; without BigInt when equal. */
function cpuDiff(a: readonly CpuState[], b: readonly CpuState[]): RegisterDiff[] {
  const out: RegisterDiff[] = [];
  const n = Math.max(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const ca = a[i], cb = b[i];
    if (ca === undefined || cb === undefined || sameRegs(ca, cb)) continue;
    for (const d of diffCpu(ca, cb)) out.push(n > 1 ? { ...d, name: `cpu${i}.${d.name}` } : d);
  }
  return out;
}

/** sameRegs(a, the state saved from `c`), without saving it. */
export function sameRegsLive(a: CpuState, c: Cpu): boolean {
  if (a.bits !== c.bits || a.flags !== c.flags || a.cs !== c.cs || a.ss !== c.ss || a.ripLo !== c.ripLo) return false;
  const wide = a.bits === 64;
  if (wide && a.ripHi !== c.ripHi) return false;
  // (a saved state has the CPU's generation when it has its segment state: see CpuBuffer.save)
  if ((a.segGen === undefined || a.segGen !== c.segGen) && !sameSegments(c, a.seg)) return false;
  return sameGprs(a.lo, a.hi, c.lo, c.hi, wide);
}

/** What diffCpu compares: the GPRs (64-bit: both halves), RIP, RFLAGS, the segment state (selectors, hidden parts, GDTR/LDTR). */
export function sameRegs(a: CpuState, b: CpuState): boolean {
  if (a.bits !== b.bits || a.flags !== b.flags || a.cs !== b.cs || a.ss !== b.ss || a.ripLo !== b.ripLo) return false;
  const wide = a.bits === 64;
  if (wide && a.ripHi !== b.ripHi) return false;
  if (a.segGen === undefined || a.segGen !== b.segGen) for (let i = 0; i < SEG_STATE_LEN; i++) if (a.seg[i] !== b.seg[i]) return false;
  return sameGprs(a.lo, a.hi, b.lo, b.hi, wide);
}

/**
 * Whether two register files hold the same GPRs: eight low halves on 32-bit, all sixteen
 * of both halves on 64-bit (unrolled, see copyRegs: the engine's buffers and a CPU's files
 * hold 16 of each).
 */
function sameGprs(x: Int32Array, u: Int32Array, y: Int32Array, v: Int32Array, wide: boolean): boolean {
  const dl = (x[0] ^ y[0]) | (x[1] ^ y[1]) | (x[2] ^ y[2]) | (x[3] ^ y[3]) | (x[4] ^ y[4]) | (x[5] ^ y[5]) | (x[6] ^ y[6]) | (x[7] ^ y[7]);
  if (!wide) return dl === 0;
  const dh = (x[8] ^ y[8]) | (x[9] ^ y[9]) | (x[10] ^ y[10]) | (x[11] ^ y[11]) | (x[12] ^ y[12]) | (x[13] ^ y[13]) | (x[14] ^ y[14]) | (x[15] ^ y[15]) |
    (u[0] ^ v[0]) | (u[1] ^ v[1]) | (u[2] ^ v[2]) | (u[3] ^ v[3]) | (u[4] ^ v[4]) | (u[5] ^ v[5]) | (u[6] ^ v[6]) | (u[7] ^ v[7]) |
    (u[8] ^ v[8]) | (u[9] ^ v[9]) | (u[10] ^ v[10]) | (u[11] ^ v[11]) | (u[12] ^ v[12]) | (u[13] ^ v[13]) | (u[14] ^ v[14]) | (u[15] ^ v[15]);
  return (dl | dh) === 0;
}
