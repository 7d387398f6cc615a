import { UsageError } from "../errors.js";
import type { Cpu } from "../machine/cpu.js";
import { IDT_DELIVERY } from "../machine/deliver.js";
import { CpuFault, type StopReason } from "../machine/events.js";
import { F } from "../machine/flags.js";
import type { CallingConvention, HostCall } from "../machine/host.js";
import type { Machine } from "../machine/machine.js";
import { Perm } from "../machine/page.js";
import type { MachineSnapshot } from "../machine/state.js";
import { SEL32 } from "../machine/tables.js";
import { fetchView, type FetchEvent, type FetchOutcome } from "./fetch.js";
import { assembleIpiStub, type CallEntry, CALL_FUNCTION_VECTOR, IDLE_LOOP } from "./ipi.js";
import { IDLE_OFFSET, IPI_HANDLER_OFFSET, IPI_STUB_OFFSET, SMP_LAYOUT_32, SMP_LAYOUT_64, type SmpLayout, stackTop } from "./layout.js";
import type { Scheduler } from "./scheduler.js";
import { StaleView } from "./stale.js";
import { traceText } from "./trace-text.js";
import { CpuContext, type Task, type Wait } from "./task.js";

/**
 * How instruction fetches see code another CPU modifies:
 * - `strict`: every fetch sees memory as it is now (a half-written instruction is seen
 *   half-written — memory really holds that — but never anything memory did not hold);
 * - `sdm`: as SDM Vol. 3A §8.1.3 allows — until it serializes (IRET, CPUID, sync_core, the
 *   sync IPI), a CPU may fetch, byte by byte, the value a byte had before another CPU
 *   modified it, so it may execute a stale instruction or one mixing old and new bytes.
 */
export type FetchModel = "strict" | "sdm";

export interface SmpOptions {
  /** The fetch model (default `strict`); can be changed per run. */
  readonly fetch?: FetchModel;
  /** Where the runner's idle loop, IPI stub and per-CPU stacks go (default by bitness). */
  readonly layout?: SmpLayout;
  /**
   * The IPI entry stub saves and restores the caller-saved registers around the handler
   * call, as a real entry does (default true); false leaves `call handler; iret`, which
   * host handlers allow and exhaustive exploration prefers (fewer steps to interleave).
   */
  readonly ipiSaveRegs?: boolean;
}

export interface SmpRunOptions {
  /** Step budget (default 100,000). */
  readonly maxSteps?: number;
  /** Stop before a step when this holds (default: every spawned task has finished, if any was spawned). */
  readonly until?: (smp: Smp) => boolean;
  /** Fetch model for this run (default: the runner's). */
  readonly fetch?: FetchModel;
  /** Record which CPU took each step in `trace` (default true; the benchmark turns it off). */
  readonly trace?: boolean;
}

/**
 * Why a run ended: `until` held; the step budget ran out; no CPU could step (all halted or
 * waiting — `deadlock` when a task is among the waiting); the schedule ended; a CPU stopped
 * (triple fault, a hook or host function asked to stop, something not modeled).
 */
export type SmpStop = "until" | "steps" | "idle" | "deadlock" | "schedule" | "stopped";

export interface SmpResult {
  readonly reason: SmpStop;
  readonly steps: number;
  /** The CPU that stopped, for `stopped`. */
  readonly cpu?: number;
  readonly cpuReason?: StopReason;
  readonly detail?: string;
}

interface TaskState {
  readonly gen: Task<unknown>;
  wait: Wait | null;
  /** The task runs while its CPU's RIP is here (an interrupt handler's IRET comes back here). */
  readonly rLo: number;
  readonly rHi: number;
  readonly spawned: boolean;
  readonly done: (value: unknown) => void;
}

/** A runner's state beyond the machine's, frozen for `restore`. */
export interface SmpSnapshot {
  readonly machine: MachineSnapshot;
  readonly cpus: readonly { irr: Uint8Array; intrShadow: number; keepRf: boolean; serializations: number }[];
}

/** Counters of one runner since construction or the last restore. */
export interface SmpStats {
  /** Steps taken, per CPU. */
  readonly steps: number[];
  /** Call-function IPIs sent, and taken (handler ran), per CPU. */
  readonly ipisSent: number[];
  readonly ipisTaken: number[];
  /** Fetches the fetch model decided (only where a stale byte was in reach): by outcome. */
  readonly fetch: Record<FetchOutcome, number>;
}

/**
 * Several CPUs on one memory: the CPUs of a Machine (1–8), each with its own registers,
 * stack, TSS and IDT, stepped one at a time in an order a Scheduler decides — one step is one
 * instruction, one interrupt delivery, or one step of a host task (see CpuContext). Adds the
 * call-function IPI (on_each_cpu through the IDT, taken only where IF = 1), sync_core, and a
 * cross-modifying-code fetch model. `strict` adds nothing to a CPU's own run loop: CPUs
 * still execute through the decode cache, and stale views are kept only in `sdm`.
 */
export class Smp {
  readonly m: Machine;
  readonly n: number;
  readonly layout: SmpLayout;
  fetch: FetchModel;
  /** Which CPU took each step (when tracing). */
  trace: number[] = [];
  /** The fetches that saw stale bytes (first 1,000). */
  fetchLog: FetchEvent[] = [];
  stats: SmpStats;
  /** The IPI's entry stub and the idle loop. */
  readonly ipiEntry: bigint;
  readonly idle: bigint;

  private readonly cpus: Cpu[];
  private readonly ctxs: CpuContext[];
  private tasks: (TaskState | null)[];
  private queues: CallEntry[][];
  private views: StaleView[];
  private ser: number[];
  private spawnedActive = 0;
  private spawnedEver = 0;
  private current = -1;
  private sched: Scheduler | null = null;
  private steps = 0;
  private readonly runnableBuf: number[] = [];

  constructor(m: Machine, opts: SmpOptions = {}) {
    this.m = m;
    this.cpus = m.cpus;
    this.n = m.cpus.length;
    this.fetch = checkFetch(opts.fetch ?? "strict");
    this.layout = opts.layout ?? (m.bits === 64 ? SMP_LAYOUT_64 : SMP_LAYOUT_32);
    const L = this.layout;
    this.idle = L.text + IDLE_OFFSET;
    this.ipiEntry = L.text + IPI_STUB_OFFSET;
    const handler = L.text + IPI_HANDLER_OFFSET;
    m.map(L.text, 0x1000, Perm.R | Perm.X);
    m.load(this.idle, IDLE_LOOP);
    m.load(this.ipiEntry, assembleIpiStub(m.bits, this.ipiEntry, handler, opts.ipiSaveRegs ?? true));
    m.defineHost(handler, "generic_smp_call_function_interrupt", (call) => this.callFunctionInterrupt(call));
    m.setGate(CALL_FUNCTION_VECTOR, { handler: this.ipiEntry, type: "interrupt" });
    this.cpus.forEach((c, i) => {
      m.map(L.stacks + BigInt(2 * i * L.stackSize), L.stackSize, Perm.R | Perm.W);
      const top = stackTop(L, i);
      if (c.tss.sp[0] === 0n) c.tss.sp[0] = top;
      if (m.bits === 32 && c.tss.ss[0] === 0) c.tss.ss[0] = SEL32.KERNEL_DS;
      if (c.sp === 0n) c.sp = top;
    });
    this.ctxs = this.cpus.map((_, i) => new CpuContext(this, i));
    this.tasks = this.cpus.map(() => null);
    this.queues = this.cpus.map(() => []);
    this.views = this.cpus.map(() => new StaleView());
    this.ser = this.cpus.map((c) => c.serializations);
    this.stats = freshStats(this.n);
    m.mem.beforeLoad = (addr, len) => this.beforeTextWrite(addr, len, this.current);
  }

  /** The task context of CPU `cpu` (what its host code can do). */
  ctx(cpu: number): CpuContext { return this.ctxs[this.checkCpu(cpu)]; }

  /** The CPU that is taking a step now (-1 between steps). */
  get stepping(): number { return this.current; }

  /** Steps taken by run()/step() since construction or the last restore. */
  get stepCount(): number { return this.steps; }

  // ---- tasks ----------------------------------------------------------------------------

  /**
   * Makes CPU `cpu` run host code: `body(ctx)` is a generator of steps (see CpuContext). The
   * CPU parks at the idle loop (with IF = 1 unless `irqs` is false), so interrupts sent to
   * it are taken between its steps; when the task returns, the CPU idles (`sti; hlt`).
   */
  spawn(cpu: number, body: (ctx: CpuContext) => Task<unknown>, opts: { irqs?: boolean } = {}): void {
    const i = this.checkCpu(cpu);
    if (this.tasks[i] !== null) throw new UsageError(`CPU ${i} already runs a task`);
    const c = this.cpus[i];
    c.rip = this.idle;
    c.halted = false;
    if (opts.irqs ?? true) c.flags |= F.IF; else c.flags &= ~F.IF;
    this.spawnedActive++;
    this.spawnedEver++;
    this.tasks[i] = { gen: body(this.ctxs[i]), wait: null, rLo: c.ripLo, rHi: c.ripHi, spawned: true, done: () => { this.spawnedActive--; } };
  }

  /**
   * A host function whose body is a task: when a CPU calls `addr`, the CPU runs the task's
   * steps (taking interrupts between them where IF = 1) and, when it returns, returns to its
   * caller with the value in rax/eax — e.g. a system call that waits for IPIs.
   */
  defineHostTask(addr: bigint, name: string, body: (call: HostCall, ctx: CpuContext) => Task<bigint | number | void>, conv?: CallingConvention): void {
    this.m.defineHost(addr, name, (call) => {
      const i = this.cpus.indexOf(call.cpu);
      if (this.tasks[i] !== null) throw new UsageError(`${name}: CPU ${i} already runs a task`);
      const c = call.cpu;
      call.noReturn = true;
      this.tasks[i] = {
        gen: body(call, this.ctxs[i]), wait: null, rLo: c.ripLo, rHi: c.ripHi, spawned: false,
        done: (v) => hostReturn(c, v as bigint | number | void),
      };
    }, conv);
  }

  /** True while CPU `cpu` runs a task. */
  hasTask(cpu: number): boolean { return this.tasks[this.checkCpu(cpu)] !== null; }

  /** Every spawned task has returned. */
  get tasksDone(): boolean { return this.spawnedActive === 0; }

  // ---- IPIs and serialization -------------------------------------------------------------

  /**
   * smp_call_function_many — kernel/smp.c: queues `fn` on every CPU but `from` and raises
   * the call-function IPI on each; returns a test for "all have run it". The IPI is
   * delivered through the target's IDT; its handler runs the queued functions and
   * acknowledges each.
   */
  callFunctionMany(from: number, fn: (cpu: number) => void): () => boolean {
    let left = 0;
    for (let i = 0; i < this.n; i++) {
      if (i === from) continue;
      const c = this.cpus[i];
      if (c.delivery !== IDT_DELIVERY) throw new UsageError(`CPU ${i}: the call-function IPI needs IDT delivery (its stub returns with IRET)`);
      left++;
      this.queues[i].push({ fn, ack: () => { left--; } });
      c.requestInterrupt(CALL_FUNCTION_VECTOR);
      this.stats.ipisSent[i]++;
    }
    return () => left === 0;
  }

  /** generic_smp_call_function_interrupt — kernel/smp.c: runs and acknowledges this CPU's queued calls. */
  private callFunctionInterrupt(call: HostCall): void {
    const i = this.cpus.indexOf(call.cpu);
    const q = this.queues[i];
    this.queues[i] = [];
    for (const e of q) {
      e.fn(i);
      e.ack();
      this.stats.ipisTaken[i]++;
    }
  }

  /** sync_core — arch/x86/include/asm/sync_core.h: a serializing event on CPU `cpu`. */
  syncCore(cpu: number): void {
    const i = this.checkCpu(cpu);
    this.cpus[i].serializations++;
    this.views[i].clear();
    this.ser[i] = this.cpus[i].serializations;
  }

  // ---- cross-modifying code -----------------------------------------------------------------

  /**
   * Writes code bytes as text_poke does (through a separate mapping: the text's write
   * protection does not apply; decoded instructions over them are dropped). In `sdm`, the
   * write is a cross-modification by CPU `by` (default: the CPU taking the current step;
   * none outside steps, e.g. while setting up): every other CPU may go on fetching the old
   * bytes until it serializes.
   */
  textPoke(addr: bigint, bytes: readonly number[] | Uint8Array, by: number = this.current): void {
    const save = this.current;
    this.current = by;
    try { this.m.load(addr, bytes); } finally { this.current = save; }
  }

  /** Called before every loader write (text_poke, m.load): records old bytes in the other CPUs' views. */
  private beforeTextWrite(addr: bigint, len: number, by: number): void {
    if (this.fetch !== "sdm" || by < 0) return;
    const pages = this.m.mem.pages;
    for (let k = 0; k < len; k++) {
      const a = BigInt.asUintN(this.m.bits, addr + BigInt(k));
      const key = Number(a >> 12n), off = Number(a & 4095n);
      const p = pages.get(key);
      if (p === undefined) continue;
      const old = p.data[off];
      for (let j = 0; j < this.n; j++) {
        if (j === by) this.views[j].drop(key, off);
        else this.views[j].keep(key, off, old);
      }
    }
  }

  /** Stale bytes CPU `cpu` may still fetch (0 after it serialized). */
  staleBytes(cpu: number): number { return this.views[this.checkCpu(cpu)].size; }

  // ---- running ------------------------------------------------------------------------------

  /** Can CPU i take a step now? */
  canStep(i: number): boolean {
    const c = this.cpus[i];
    if (c.interruptible) return true;
    const t = this.tasks[i];
    if (t !== null && c.ripLo === t.rLo && c.ripHi === t.rHi) return t.wait === null || t.wait.until();
    return !c.halted;
  }

  /** The CPUs that can take a step now. */
  runnable(): number[] {
    const out: number[] = [];
    for (let i = 0; i < this.n; i++) if (this.canStep(i)) out.push(i);
    return out;
  }

  /**
   * Runs the CPUs in the order `s` decides until `until` holds, the budget runs out, no
   * CPU can step, the schedule ends, or a CPU stops.
   */
  run(s: Scheduler, o: SmpRunOptions = {}): SmpResult {
    const max = o.maxSteps ?? 100_000;
    if (!Number.isInteger(max) || max < 0) throw new UsageError(`maxSteps must be a non-negative integer, got ${max}`);
    if (o.fetch !== undefined) this.setFetch(o.fetch);
    const until = o.until ?? (this.spawnedEver > 0 ? (x: Smp) => x.tasksDone : undefined);
    const tracing = o.trace ?? true;
    const rb = this.runnableBuf;
    this.sched = s;
    try {
      for (let steps = 0; ; steps++) {
        if (until !== undefined && until(this)) return { reason: "until", steps };
        if (steps >= max) return { reason: "steps", steps };
        rb.length = 0;
        for (let i = 0; i < this.n; i++) if (this.canStep(i)) rb.push(i);
        if (rb.length === 0) return { reason: this.tasks.some((t) => t !== null && t.wait !== null) ? "deadlock" : "idle", steps };
        let k = 0;
        if (rb.length > 1) {
          const r = s.next(rb);
          if (r === undefined) return { reason: "schedule", steps };
          k = r;
        }
        const i = rb[k];
        if (tracing) this.trace.push(i);
        const why = this.stepCpu(i);
        if (why !== null && why !== "hlt") {
          return { reason: "stopped", steps: steps + 1, cpu: i, cpuReason: why, detail: this.cpus[i].lastStopDetail };
        }
      }
    } finally {
      this.sched = null;
    }
  }

  /**
   * One step of CPU `cpu`, outside run() (fetch choices in `sdm` use `s`, default: always
   * coherent). Returns the CPU's stop reason, or null.
   */
  step(cpu: number, s?: Scheduler): StopReason | null {
    const i = this.checkCpu(cpu);
    const save = this.sched;
    this.sched = s ?? save;
    try { return this.stepCpu(i); } finally { this.sched = save; }
  }

  private stepCpu(i: number): StopReason | null {
    const c = this.cpus[i];
    this.current = i;
    this.steps++;
    this.stats.steps[i]++;
    let why: StopReason | null = null;
    try {
      const t = this.tasks[i];
      if (c.interruptible) why = c.step();
      else if (t !== null && c.ripLo === t.rLo && c.ripHi === t.rHi) this.advance(i, t);
      else if (this.fetch === "sdm" && this.views[i].size !== 0) why = this.stepSdm(i, c);
      else why = c.step();
    } finally {
      this.current = -1;
    }
    if (c.serializations !== this.ser[i]) {
      this.ser[i] = c.serializations;
      this.views[i].clear();
    }
    return why;
  }

  private advance(i: number, t: TaskState): void {
    if (t.wait !== null) {
      if (!t.wait.until()) return; // stepped by hand while blocked: a spin
      t.wait = null;
    }
    const r = t.gen.next();
    if (r.done === true) {
      this.tasks[i] = null;
      t.done(r.value);
    } else if (r.value !== undefined) {
      t.wait = r.value;
    }
  }

  /** A step under `sdm` for a CPU holding stale bytes: decide what the fetch sees, then execute it. */
  private stepSdm(i: number, c: Cpu): StopReason | null {
    let ins;
    try { ins = c.fetch(c.ripLo, c.ripHi); } catch (e) {
      if (e instanceof CpuFault) return c.step(); // the fetch faults the ordinary way
      throw e;
    }
    const seen = fetchView(c, ins, this.views[i], (n) => (this.sched === null ? 0 : this.sched.choose(n)));
    if (seen === null) return c.step(ins);
    this.stats.fetch[seen.outcome]++;
    if (seen.outcome === "current") return c.step(ins);
    if (this.fetchLog.length < 1000) this.fetchLog.push({ step: this.steps - 1, cpu: i, addr: c.rip, outcome: seen.outcome, seen: seen.insn.bytes, memory: seen.memory });
    return c.step(seen.insn);
  }

  private setFetch(f: FetchModel): void {
    this.fetch = checkFetch(f);
    if (f === "strict") for (const v of this.views) v.clear();
  }

  // ---- snapshots ------------------------------------------------------------------------------

  /** Freezes the machine and the CPUs' interrupt state (no task may be running). */
  snapshot(): SmpSnapshot {
    if (this.tasks.some((t) => t !== null)) throw new UsageError("snapshot: a task is running (generators cannot be copied)");
    return {
      machine: this.m.snapshot(),
      cpus: this.cpus.map((c) => ({ irr: c.irr.slice(), intrShadow: c.intrShadow, keepRf: c.keepRf, serializations: c.serializations })),
    };
  }

  /** Back to a snapshot: machine, interrupt state; tasks, queues, stale views, stats and trace are cleared. */
  restore(s: SmpSnapshot): void {
    this.m.restore(s.machine);
    this.cpus.forEach((c, i) => {
      const x = s.cpus[i];
      c.irr.set(x.irr);
      c.irrCount = x.irr.reduce((a, b) => a + b, 0);
      c.intrShadow = x.intrShadow;
      c.keepRf = x.keepRf;
      c.serializations = x.serializations;
    });
    this.tasks = this.cpus.map(() => null);
    this.queues = this.cpus.map(() => []);
    for (const v of this.views) v.clear();
    this.ser = this.cpus.map((c) => c.serializations);
    this.spawnedActive = 0;
    this.spawnedEver = 0;
    this.steps = 0;
    this.trace = [];
    this.fetchLog = [];
    this.stats = freshStats(this.n);
  }

  /** The trace as runs and repeated blocks: `cpu1×3 cpu0 (cpu1 cpu2)×40 …` (see trace-text.ts). */
  traceText(from = 0): string {
    return traceText(this.trace, from);
  }

  private checkCpu(cpu: number): number {
    if (!Number.isInteger(cpu) || cpu < 0 || cpu >= this.n) throw new UsageError(`no CPU ${cpu} (the machine has ${this.n})`);
    return cpu;
  }
}

function checkFetch(f: FetchModel): FetchModel {
  if (f !== "strict" && f !== "sdm") throw new UsageError(`fetch model must be "strict" or "sdm", got ${String(f)}`);
  return f;
}

function freshStats(n: number): SmpStats {
  return {
    steps: new Array<number>(n).fill(0), ipisSent: new Array<number>(n).fill(0), ipisTaken: new Array<number>(n).fill(0),
    fetch: { current: 0, stale: 0, torn: 0 },
  };
}

/** A host task's return: the value in rax/eax, then the `ret` the C function ends with. */
function hostReturn(c: Cpu, v: bigint | number | void): void {
  if (v !== undefined) c.setReg(0, BigInt.asUintN(64, BigInt(v)));
  try {
    const lo = c.peekW(0), hi = c.th;
    c.jumpTo(lo, hi);
    c.spAdd(c.bits === 64 ? 8 : 4);
  } catch (e) {
    if (!(e instanceof CpuFault)) throw e;
    c.curLo = c.ripLo; c.curHi = c.ripHi;
    c.fault(e);
  }
}
