import { Mnemonic } from "iced-x86";
import { CpuFault, faultClass, type EventKind, type ExceptionEvent, type RunResult, type StopReason, Vec, vectorName } from "./events.js";
import { F } from "./flags.js";
import { type Insn, setNextRip } from "./insn.js";
import type { Memory } from "./memory.js";
import type { Page } from "./page.js";
import { emptyTss, type Gate, type Gdt, type Tss } from "./tables.js";
import { isCanonical, toBig } from "./u64.js";
import { type EventDelivery, IDT_DELIVERY } from "./deliver.js";
import { FLAT_CODE_ATTR, FLAT_DATA_ATTR, freshSegGen, SEG, setSegmentQuietly } from "./segments.js";
import { UsageError } from "../errors.js";
import { stackRun } from "./stack-runs.js";

/** The mnemonics a fused stack run starts with (stack-runs.ts), as plain numbers for the hot loop. */
const MN_PUSH = Mnemonic.Push, MN_POP = Mnemonic.Pop;

/** Register numbers (iced-x86 order): RAX RCX RDX RBX RSP RBP RSI RDI R8..R15. */
export const R = { AX: 0, CX: 1, DX: 2, BX: 3, SP: 4, BP: 5, SI: 6, DI: 7, R8: 8, R9: 9, R10: 10, R11: 11, R12: 12, R13: 13, R14: 14, R15: 15 } as const;
export const REG_NAMES_64 = ["rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi", "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15"];
export const REG_NAMES_32 = ["eax", "ecx", "edx", "ebx", "esp", "ebp", "esi", "edi"];

/** Translates an address in the decode cache miss path into a compiled instruction. */
export type DecodeFn = (c: Cpu, lo: number, hi: number, page: Page) => Insn;

/** What hooks may answer: "stop" ends the run after (instruction) or before (exception) the event. */
export type HookAnswer = void | "stop";

export interface CpuHooks {
  /** Before each instruction, with its address. */
  instruction?: (c: Cpu, lo: number, hi: number, insn: Insn) => HookAnswer;
  /** Before an exception or interrupt is delivered. */
  exception?: (c: Cpu, e: ExceptionEvent) => HookAnswer;
}

/**
 * One x86 CPU: 32-bit protected mode or 64-bit long mode, general registers as int32
 * halves, RIP, RFLAGS, segment registers (selectors with their hidden base, limit and
 * attributes; CPL = CS.RPL), GDTR/LDTR, its IDT and TSS, executing from a shared Memory
 * through the decode cache.
 */
export class Cpu {
  readonly lo = new Int32Array(16);
  readonly hi = new Int32Array(16);
  ripLo = 0;
  ripHi = 0;
  flags = 0x2;
  cs = 0;
  cr2 = 0n;
  /**
   * Segment registers ES CS SS DS FS GS (segments.ts SEG): selectors and hidden parts.
   * segBase is the linear base (u32 as int32), segLimit the byte limit (recorded, not
   * enforced), segAttr the descriptor's attribute bits or SEG_UNUSABLE, segHi the high half
   * an access through the segment carries (UNUSABLE_HI for a null DS/ES/FS/GS in 32-bit mode).
   */
  readonly segSel = new Int32Array(6);
  readonly segBase = new Int32Array(6);
  readonly segLimit = new Int32Array(6).fill(-1);
  readonly segAttr = Int32Array.of(FLAT_DATA_ATTR, FLAT_CODE_ATTR, FLAT_DATA_ATTR, FLAT_DATA_ATTR, FLAT_DATA_ATTR, FLAT_DATA_ATTR);
  readonly segHi = new Int32Array(6);
  /** segBase[SS] again as a plain field, for the stack operations. */
  ssBase = 0;
  /**
   * The generation of the segment state (segment registers with their hidden parts, GDTR,
   * LDTR): a fresh one whenever it changes (segments.ts setSegment, setGdtr, setLdtr), a saved
   * state's when loaded from it. Two states with the same generation hold the same segment state.
   */
  segGen = freshSegGen();
  /** The typed GDT, used while GDTR does not point into memory (gdtrOn false). */
  gdt: Gdt = [];
  // GDTR and LDTR (set through setGdtr/setLdtr, which keep segGen honest)
  #gdtrOn = false; #gdtrBase = 0; #gdtrLimit = 0;
  #ldtrOn = false; #ldtrSel = 0; #ldtrBase = 0; #ldtrLimit = 0;
  /** GDTR: when on, descriptors are read from simulated memory at gdtrBase (limit in bytes − 1); off: the typed `gdt`. */
  get gdtrOn(): boolean { return this.#gdtrOn; }
  get gdtrBase(): number { return this.#gdtrBase; }
  get gdtrLimit(): number { return this.#gdtrLimit; }
  /** LDTR: selector and, when on, the LDT's base and limit (LLDT). */
  get ldtrOn(): boolean { return this.#ldtrOn; }
  get ldtrSel(): number { return this.#ldtrSel; }
  get ldtrBase(): number { return this.#ldtrBase; }
  get ldtrLimit(): number { return this.#ldtrLimit; }

  /** Loads GDTR (as LGDT does): `on` false goes back to the typed table. */
  setGdtr(on: boolean, base: number, limit: number): void {
    this.#gdtrOn = on; this.#gdtrBase = base | 0; this.#gdtrLimit = limit | 0;
    this.segGen = freshSegGen();
  }

  /** Loads LDTR (as LLDT does, after its checks): `on` false for a null selector. */
  setLdtr(sel: number, on: boolean, base: number, limit: number): void {
    this.#ldtrSel = sel & 0xffff; this.#ldtrOn = on; this.#ldtrBase = base | 0; this.#ldtrLimit = limit | 0;
    this.segGen = freshSegGen();
  }
  /** Scratch: the descriptor dwords the last fetchDescriptor read. */
  dLo = 0; dHi = 0;
  idt: (Gate | undefined)[] = [];
  tss: Tss = emptyTss();
  halted = false;
  /** Instructions executed since creation. */
  icount = 0;
  /**
   * setReg calls so far: a check result whose snapshots are built from the live CPU later
   * (oracle/engine.ts holds) sees that a register was set through the API since its case.
   */
  regSets = 0;
  /**
   * Serializing instructions and events executed (IRET, CPUID; sync_core models add theirs),
   * for cross-modifying-code fetch models. Event delivery is not serializing (SDM Vol. 3A
   * §9.3 lists instructions only); the IRET that ends a handler is.
   */
  serializations = 0;
  /** Pending external interrupts (the INTR line / a local APIC's IRR): a flag per vector. */
  readonly irr = new Uint8Array(256);
  /** Number of vectors pending in `irr`. */
  irrCount = 0;
  /**
   * Interrupt shadow: 1 while maskable interrupts are inhibited at the current instruction
   * boundary (right after an STI that set IF), 2 while that STI is executing.
   */
  intrShadow = 0;
  hooks: CpuHooks = {};
  /**
   * Whether run() executes runs of pushes or pops as one operation where that is certainly
   * the same as executing them one by one (stack-runs.ts); off: one instruction at a time.
   */
  fuseStacks = true;
  /** Stack runs run() executed fused (each counts its members in icount as usual), for tests and profiles. */
  fusedRuns = 0;
  /** Event delivery: the IDT by default; FRED plugs in here. */
  delivery: EventDelivery = IDT_DELIVERY;

  // scratch used by compiled instructions
  th = 0; eaHi = 0; aLo = 0; aHi = 0; rh = 0; nf = 0;
  /** Set by IRET: the RF it loaded survives that instruction. */
  keepRf = false;
  /** Start of the executing instruction. */
  curLo = 0; curHi = 0;

  private stopReason: StopReason | null = null;
  private stopDetail: string | undefined;
  private stopEvent: ExceptionEvent | undefined;
  /** Non-zero when something must be looked at after the current instruction (stop, HLT, RF). */
  pending = 0;

  constructor(readonly mem: Memory, readonly bits: 32 | 64, private readonly decode: DecodeFn) {}

  get cpl(): number { return this.cs & 3; }

  /** The detail of the last stop (a host function's or hook's reason), if any. */
  get lastStopDetail(): string | undefined { return this.stopDetail; }

  /**
   * SS, DS, ES, FS, GS selectors. Writing one loads its hidden part from the descriptor table
   * without privilege checks, as a loader or debugger would (segments.ts setSegmentQuietly);
   * instructions load them with the SDM's checks.
   */
  get ss(): number { return this.segSel[SEG.SS]; }
  set ss(v: number) { setSegmentQuietly(this, SEG.SS, v); }
  get ds(): number { return this.segSel[SEG.DS]; }
  set ds(v: number) { setSegmentQuietly(this, SEG.DS, v); }
  get es(): number { return this.segSel[SEG.ES]; }
  set es(v: number) { setSegmentQuietly(this, SEG.ES, v); }
  get fs(): number { return this.segSel[SEG.FS]; }
  set fs(v: number) { setSegmentQuietly(this, SEG.FS, v); }
  get gs(): number { return this.segSel[SEG.GS]; }
  set gs(v: number) { setSegmentQuietly(this, SEG.GS, v); }

  /**
   * Sets CS as a loader would (CPL = its RPL): in 32-bit mode the hidden part is loaded from
   * the descriptor without checks, like the other segment setters.
   */
  setCs(sel: number): void {
    if (this.bits === 32) setSegmentQuietly(this, SEG.CS, sel);
    else this.selectCs(sel);
  }

  /** Sets the CS selector alone (the caller sets the hidden part) and keeps memory's privilege in step with CPL. */
  selectCs(sel: number): void {
    this.cs = sel & 0xffff;
    if (this.segSel[SEG.CS] !== this.cs) { this.segSel[SEG.CS] = this.cs; this.segGen = freshSegGen(); }
    const user = (sel & 3) === 3;
    if (user !== this.mem.user) {
      this.mem.user = user;
      this.mem.flush();
      this.mem.gen++; // the fetch page was validated for the other privilege
    }
  }

  // ---- 64-bit views for API users -------------------------------------------------------
  reg(i: number): bigint { return this.bits === 64 ? toBig(this.lo[i], this.hi[i]) : BigInt(this.lo[i] >>> 0); }
  setReg(i: number, v: bigint): void {
    this.regSets++;
    this.lo[i] = Number(BigInt.asIntN(32, v));
    this.hi[i] = this.bits === 64 ? Number(BigInt.asIntN(32, v >> 32n)) : 0;
  }
  get rip(): bigint { return this.bits === 64 ? toBig(this.ripLo, this.ripHi) : BigInt(this.ripLo >>> 0); }
  set rip(v: bigint) {
    this.ripLo = Number(BigInt.asIntN(32, v));
    this.ripHi = this.bits === 64 ? Number(BigInt.asIntN(32, v >> 32n)) : 0;
  }
  get sp(): bigint { return this.reg(4); }
  set sp(v: bigint) { this.setReg(4, v); }

  // ---- stack ---------------------------------------------------------------------------
  /** Pushes one stack-width word (8 bytes in 64-bit mode, 4 in 32-bit mode). */
  pushW(lo: number, hi: number): void {
    if (this.bits === 64) {
      const s = (this.lo[4] >>> 0) - 8;
      const nl = s | 0, nh = s < 0 ? (this.hi[4] - 1) | 0 : this.hi[4];
      this.mem.write64(nl, nh, lo, hi, true);
      this.lo[4] = nl; this.hi[4] = nh;
    } else {
      const n = (this.lo[4] - 4) | 0;
      this.mem.write32((n + this.ssBase) | 0, 0, lo, true);
      this.lo[4] = n;
    }
  }

  /** Pushes 2 bytes (operand-size 16 push). */
  push16(v: number): void {
    const s = (this.lo[4] >>> 0) - 2;
    const nl = s | 0, nh = this.bits === 64 && s < 0 ? (this.hi[4] - 1) | 0 : this.hi[4];
    if (this.bits === 64) this.mem.write16(nl, nh, v, true);
    else this.mem.write16((nl + this.ssBase) | 0, 0, v, true);
    this.lo[4] = nl; this.hi[4] = nh;
  }

  /** Reads the stack word at SP + off without popping; high half in `th`. */
  peekW(off: number): number {
    if (this.bits === 64) {
      const s = (this.lo[4] >>> 0) + off;
      const l = s | 0, h = (this.hi[4] + (s >= 4294967296 ? 1 : 0)) | 0;
      const v = this.mem.read64(l, h, true);
      this.th = this.mem.rhi;
      return v;
    }
    this.th = 0;
    return this.mem.read32((this.lo[4] + off + this.ssBase) | 0, 0, true);
  }

  /** Reads 2 bytes at SP + off. */
  peek16(off: number): number {
    const s = (this.lo[4] >>> 0) + off;
    if (this.bits === 32) return this.mem.read16((s + this.ssBase) | 0, 0, true);
    return this.mem.read16(s | 0, (this.hi[4] + (s >= 4294967296 ? 1 : 0)) | 0, true);
  }

  /** The linear address of SS:ESP + off (32-bit mode; 64-bit mode ignores the base). */
  stackLinear(off = 0): bigint {
    if (this.bits === 64) return BigInt.asUintN(64, this.sp + BigInt(off));
    return BigInt((this.lo[4] + off + this.ssBase) >>> 0);
  }

  /** SP += delta (delta may be negative), wrapping at the stack width. */
  spAdd(delta: number): void {
    const s = (this.lo[4] >>> 0) + delta;
    this.lo[4] = s | 0;
    if (this.bits === 64 && (s < 0 || s >= 4294967296)) this.hi[4] = (this.hi[4] + Math.floor(s / 4294967296)) | 0; // (the carry out of the low half)
  }

  /** #GP(0) unless (lo, hi) is a canonical branch target (64-bit mode). */
  checkTarget(lo: number, hi: number): void {
    if (this.bits === 64 && !isCanonical(lo, hi)) {
      throw new CpuFault(Vec.GP, 0, undefined, `non-canonical target 0x${toBig(lo, hi).toString(16)}`);
    }
  }

  /** Sets RIP to (lo, hi) after checking it is canonical (64-bit): #GP(0) otherwise. */
  jumpTo(lo: number, hi: number): void {
    this.checkTarget(lo, hi);
    this.ripLo = lo;
    this.ripHi = this.bits === 64 ? hi : 0;
  }

  // ---- control -------------------------------------------------------------------------
  /** Ends the current run after this instruction (for host functions and hooks). */
  requestStop(reason: StopReason, detail?: string): void {
    this.stopReason = reason;
    this.stopDetail = detail;
    this.pending = 1;
  }

  /** Forgets the fetch cache (after a mode or mapping change made from outside). */
  refetch(): void { this.mem.gen++; }

  // ---- external interrupts -------------------------------------------------------------
  /**
   * Raises the interrupt request for `vector` (32–255), as a local APIC would: it stays
   * pending until an instruction boundary where IF = 1 and no STI shadow, then is delivered
   * as an external interrupt through the CPU's delivery (IDT gate). Requests for a vector
   * already pending merge (one IRR bit per vector); the highest vector goes first.
   */
  requestInterrupt(vector: number): void {
    if (!Number.isInteger(vector) || vector < 32 || vector > 255) throw new UsageError(`interrupt vector must be 32..255, got ${vector}`);
    if (this.irr[vector] === 0) { this.irr[vector] = 1; this.irrCount++; }
    this.pending = 1;
  }

  /** True when a pending interrupt would be taken at this boundary (IF = 1, no shadow). */
  get interruptible(): boolean {
    return this.irrCount !== 0 && this.intrShadow === 0 && (this.flags & F.IF) !== 0;
  }

  /** STI with IF = 0: interrupts stay inhibited at the boundary after it (SDM Vol. 2 STI). */
  inhibitInterrupts(): void { this.intrShadow = 2; this.pending = 1; }

  /** Delivers the highest pending interrupt now (the caller checked `interruptible`); wakes HLT. */
  private takeInterrupt(): void {
    let v = 255;
    while (this.irr[v] === 0) v--;
    this.irr[v] = 0;
    this.irrCount--;
    this.halted = false;
    this.curLo = this.ripLo; this.curHi = this.ripHi;
    this.raise(v, "external", undefined, this.ripLo, this.ripHi);
  }

  /** Keeps memory's privilege in step with this CPU's CPL (memory is shared by all CPUs). */
  private syncPrivilege(): void {
    const user = (this.cs & 3) === 3;
    if (user !== this.mem.user) { this.mem.user = user; this.mem.flush(); this.mem.gen++; }
  }

  /** The boundary after an instruction in run(): RF, the STI shadow, pending interrupts. */
  private boundary(): void {
    if (this.intrShadow !== 0) {
      if (--this.intrShadow !== 0) { this.pending = 1; return; }
    }
    if (this.irrCount !== 0) {
      if ((this.flags & F.IF) !== 0) this.takeInterrupt();
      if (this.irrCount !== 0) this.pending = 1;
    }
  }

  // ---- one step, for schedulers ----------------------------------------------------------
  private sPage: Page | null = null;
  private sLo = 0;
  private sHi = 0;
  private sGen = -1;

  /**
   * The instruction at (lo, hi) as memory holds it now (through the decode cache); throws
   * CpuFault when it cannot be fetched.
   */
  fetch(lo: number, hi: number): Insn {
    const mem = this.mem;
    this.syncPrivilege();
    let p = this.sPage;
    if (p === null || ((lo ^ this.sLo) >>> 12) !== 0 || hi !== this.sHi || this.sGen !== mem.gen) {
      this.sPage = null;
      p = mem.readPage(lo, hi, true, false);
      this.sPage = p; this.sLo = lo; this.sHi = hi; this.sGen = mem.gen;
    }
    const code = p.code;
    let ins = code === null ? undefined : code[lo & 4095];
    if (ins === undefined) {
      ins = this.decode(this, lo, hi, p);
      if (this.sGen !== mem.gen) this.sPage = null;
    }
    return ins;
  }

  /**
   * One step for a multi-CPU scheduler: delivers a pending interrupt if one can be taken at
   * this boundary, otherwise executes one instruction — `fetched` when a fetch model supplies
   * the bytes the CPU sees (stale or torn), else the instruction in memory. A halted CPU with
   * nothing to take stays halted. Returns why the CPU stopped, or null.
   */
  step(fetched?: Insn): StopReason | null {
    this.stopReason = null;
    this.stopDetail = undefined;
    this.stopEvent = undefined;
    this.syncPrivilege();
    if (this.interruptible) {
      this.takeInterrupt();
      this.pending = 0;
      return this.stopReason;
    }
    if (this.halted) return "hlt";
    const lo = this.ripLo, hi = this.ripHi;
    this.curLo = lo; this.curHi = hi;
    try {
      const ins = fetched ?? this.fetch(lo, hi);
      if (this.hooks.instruction !== undefined && this.hooks.instruction(this, lo, hi, ins) === "stop") {
        this.pending = 0;
        return "stopped";
      }
      setNextRip(this, lo, hi, ins.len);
      ins.exec(this, ins);
    } catch (e) {
      if (!(e instanceof CpuFault)) throw e;
      this.sPage = null;
      this.ripLo = this.curLo;
      this.ripHi = this.curHi;
      this.fault(e);
    }
    this.icount++;
    if ((this.flags & F.RF) !== 0) {
      if (this.keepRf) this.keepRf = false; // RF survives the IRET, not the next insn
      else this.flags &= ~F.RF;
    }
    if (this.intrShadow !== 0) this.intrShadow--;
    this.pending = 0;
    if (this.stopReason !== null) return this.stopReason;
    return this.halted ? "hlt" : null;
  }

  /**
   * Runs until `maxSteps` instructions have executed, RIP equals `until`, HLT, a triple
   * fault, or a hook stops it. Exceptions are delivered through the IDT as hardware does.
   */
  run(maxSteps: number, until?: bigint): RunResult {
    this.stopReason = null;
    this.stopDetail = undefined;
    this.stopEvent = undefined;
    this.halted = false;
    this.pending = this.keepRf === true || (this.flags & F.RF) !== 0 || this.irrCount !== 0 || this.intrShadow !== 0 ? 1 : 0;
    this.syncPrivilege();
    if (this.interruptible) {
      this.takeInterrupt();
      if (this.stopReason !== null) return this.result(this.stopReason, 0);
    }
    const uLo = until === undefined ? 0 : Number(BigInt.asIntN(32, until));
    const uHi = until === undefined ? 0 : Number(BigInt.asIntN(32, until >> 32n));
    const hasUntil = until !== undefined;
    let steps = 0;
    const hooked = this.hooks.instruction !== undefined;
    // (=== true: a plain field read is typed as any value, and `&&` of it made the loop test its truthiness generically at every step, ≈ 16 host instructions)
    const fuse = this.fuseStacks === true && !hooked;
    const mem = this.mem, wide = this.bits === 64;
    // The fetch page and what it was validated against, kept in locals for the hot loop.
    let fPage: Page | null = null, fLo = 0, fHi = 0, fGen = -1;
    while (steps < maxSteps) {
      try {
        while (steps < maxSteps) {
          const lo = this.ripLo, hi = this.ripHi;
          this.curLo = lo; this.curHi = hi;
          if (hasUntil && lo === uLo && hi === uHi) return this.result("until", steps);
          if (fPage === null || ((lo ^ fLo) >>> 12) !== 0 || hi !== fHi || fGen !== mem.gen) {
            fPage = null;
            const p = mem.readPage(lo, hi, true, false);
            fPage = p; fLo = lo; fHi = hi; fGen = mem.gen;
          }
          const code = fPage.code;
          let ins = code === null ? undefined : code[lo & 4095];
          if (ins === undefined) {
            ins = this.decode(this, lo, hi, fPage);
            if (fGen !== mem.gen) fPage = null;
          }
          if (hooked && this.hooks.instruction !== undefined && this.hooks.instruction(this, lo, hi, ins) === "stop") {
            return this.result("stopped", steps);
          }
          if (fuse && (ins.mnemonic === MN_PUSH || ins.mnemonic === MN_POP)) {
            const k = stackRun(this, ins, fPage, lo, hi, maxSteps - steps, hasUntil, uLo, uHi);
            if (k !== 0) { steps += k; continue; } // (nothing pending after it: see stack-runs.ts)
          }
          // (setNextRip written out: this loop is past V8's inlining budget, and a call per step costs)
          const nl = (lo + ins.len) | 0;
          this.ripLo = nl;
          this.ripHi = lo < 0 && nl >= 0 ? (wide ? (hi + 1) | 0 : 0) : hi;
          ins.exec(this, ins);
          steps++;
          if (this.pending !== 0) {
            this.pending = 0;
            if ((this.flags & F.RF) !== 0) {
              if (this.keepRf) { this.keepRf = false; this.pending = 1; } // RF survives the IRET, not the next insn
              else this.flags &= ~F.RF;
            }
            if (this.stopReason !== null) return this.result(this.stopReason, steps);
            if (this.intrShadow !== 0 || this.irrCount !== 0) {
              this.boundary();
              if (this.stopReason !== null) return this.result(this.stopReason, steps);
            }
            if (this.halted) return this.result("hlt", steps);
          }
        }
      } catch (e) {
        if (!(e instanceof CpuFault)) throw e;
        fPage = null;
        this.ripLo = this.curLo;
        this.ripHi = this.curHi;
        steps++;
        this.fault(e);
        if (this.stopReason !== null) return this.result(this.stopReason, steps);
      }
    }
    return this.result("steps", steps);
  }

  private result(reason: StopReason, steps: number): RunResult {
    this.icount += steps;
    return { reason, steps, event: this.stopEvent, detail: this.stopDetail };
  }

  /** A fault thrown by the current instruction: delivered with the instruction's address. */
  fault(f: CpuFault): void {
    // 32-bit mode has no non-canonical addresses: such a fault is an access through a null segment (segments.ts UNUSABLE_HI)
    const detail = this.bits === 32 && f.detail !== undefined && f.detail.startsWith("non-canonical") ? "access through a null segment register" : f.detail;
    this.raise(f.vector, "fault", f.errorCode, this.curLo, this.curHi, f.cr2, detail);
  }

  /**
   * Raises an event and delivers it; a fault during delivery becomes a second event
   * (serially, or #DF per SDM Vol. 3A Table 6-5); a fault while delivering #DF is a triple
   * fault. `savedLo/Hi` is the IP to save (next instruction for traps).
   */
  raise(vector: number, kind: EventKind, errorCode: number | undefined, savedLo: number, savedHi: number, cr2?: bigint, detail?: string): void {
    let nested = false;
    for (;;) {
      if (vector === Vec.PF && cr2 !== undefined) this.cr2 = cr2;
      // The event as hooks and stop reasons see it, built only when one of them needs it
      // (from the state at raise time: delivery may have moved RSP before faulting).
      let ev: ExceptionEvent | undefined;
      const spLo = this.lo[4], spHi = this.hi[4], cpl = this.cs & 3, ipLo = this.curLo, ipHi = this.curHi;
      if (this.hooks.exception !== undefined) {
        ev = this.event(vector, kind, errorCode, cr2, savedLo, savedHi, ipLo, ipHi, spLo, spHi, cpl, detail);
        if (this.hooks.exception(this, ev) === "stop") {
          this.stopReason = "exception";
          this.stopEvent = ev;
          this.pending = 1;
          return;
        }
      }
      try {
        this.delivery.deliver(this, vector, kind, errorCode, savedLo, savedHi, nested);
        return;
      } catch (e) {
        if (!(e instanceof CpuFault)) throw e;
        // CR2 is loaded when a #PF is detected, also one that becomes #DF (QEMU fixture r0_mov_pf_pf_df).
        if (e.vector === Vec.PF && e.cr2 !== undefined) this.cr2 = e.cr2;
        const first = faultClass(vector), second = faultClass(e.vector);
        if (first === "doublefault") {
          this.stopReason = "triple-fault";
          this.stopEvent = ev ?? this.event(vector, kind, errorCode, cr2, savedLo, savedHi, ipLo, ipHi, spLo, spHi, cpl, detail);
          this.pending = 1;
          this.stopDetail = `${e.toString()} while delivering #DF: shutdown`;
          return;
        }
        const toDf = (first === "contributory" && second === "contributory") ||
          (first === "pagefault" && (second === "contributory" || second === "pagefault"));
        savedLo = this.curLo; savedHi = this.curHi;
        nested = true;
        detail = `${e.toString()} while delivering ${vectorName(vector)}`;
        if (toDf) {
          vector = Vec.DF; kind = "abort"; errorCode = 0; cr2 = undefined;
        } else {
          vector = e.vector; kind = "fault"; errorCode = e.errorCode; cr2 = e.cr2;
        }
      }
    }
  }

  /** The ExceptionEvent of a raise, from the values it saw (int32 halves). */
  private event(vector: number, kind: EventKind, errorCode: number | undefined, cr2: bigint | undefined, savedLo: number, savedHi: number,
    ipLo: number, ipHi: number, spLo: number, spHi: number, cpl: number, detail: string | undefined): ExceptionEvent {
    const wide = this.bits === 64;
    return {
      vector, name: vectorName(vector), kind, errorCode, cr2: vector === Vec.PF ? cr2 : undefined,
      savedIp: wide ? toBig(savedLo, savedHi) : BigInt(savedLo >>> 0),
      ip: wide ? toBig(ipLo, ipHi) : BigInt(ipLo >>> 0),
      cpl, sp: wide ? toBig(spLo, spHi) : BigInt(spLo >>> 0), detail,
    };
  }

  /** Marks the CPU halted (HLT); the run stops with "hlt". */
  halt(): void { this.halted = true; this.pending = 1; }

  /** Stops the run as unsupported (a feature the machine does not model). */
  unsupported(detail: string): void {
    this.ripLo = this.curLo;
    this.ripHi = this.curHi;
    this.requestStop("unsupported", detail);
  }
}
