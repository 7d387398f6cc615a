import { UsageError } from "../errors.js";
import type { KernelEvent } from "../kernel/kernel.js";
import type { Patcher } from "../kernel/patch-step.js";
import { FTRACE_NOP5 } from "../kernel/ftrace-replace.js";
import { bootSmp, type SmpKernel, type SmpVariant, type TraceRecord } from "../kernel/smp-variants.js";
import type { Cpu } from "../machine/cpu.js";
import { F } from "../machine/flags.js";
import type { Insn } from "../machine/insn.js";
import type { Scheduler } from "./scheduler.js";
import { type FetchModel, Smp, type SmpResult, type SmpRunOptions } from "./smp.js";
import { patcherTask } from "./tracer-task.js";

/** One call of a traced function on one CPU: from fetching its fentry site to the body. */
export interface TracedCall {
  readonly cpu: number;
  /** The function (its fentry site). */
  readonly fn: bigint;
  /** Step at which the site was fetched. */
  readonly start: number;
  /** Step at which the body was reached (undefined while in flight). */
  end: number | undefined;
  /** Tracer calls made for it. */
  traces: number;
  /** What the CPU fetched at the site: the nop, a call, the int3 of a patch in progress, anything else. */
  readonly fetched: "nop" | "call" | "int3" | "other";
}

/** A tracing change run as a task: enabling or disabling, and the steps it started and returned at. */
export interface TracingChange {
  readonly enable: boolean;
  readonly cpu: number;
  readonly sites: readonly bigint[];
  start: number | undefined;
  end: number | undefined;
}

/** Sees every instruction a CPU executes: CPU index, the CPU, address, the instruction as fetched, step. */
export type InstructionObserver = (cpu: number, c: Cpu, addr: bigint, insn: Insn, step: number) => void;

export interface TracerSimOptions {
  /** An SMP kernel model (`SMP_VARIANTS`), by name or value. */
  readonly variant: string | SmpVariant;
  /** CPUs (2–8). */
  readonly cpus: number;
  /** Cross-modifying-code fetch model (default `sdm`). */
  readonly fetch?: FetchModel;
}

/**
 * A tracer simulator: N CPUs running a kernel model, traced functions with fentry sites, CPUs
 * looping over calls to them, tracing switched on and off by a patcher CPU mid-run (the
 * version's ftrace_replace_code as a task), everything under a scheduler — and the trace,
 * with every call accounted for (how many times it was traced, what its site looked like).
 * It owns the machine's instruction hook (Machine.onInstruction has one slot): add your own
 * per-instruction code with `observe`. An oops (die) on any CPU ends `run`; see `died`.
 */
export class TracerSim {
  readonly sk: SmpKernel;
  readonly smp: Smp;
  /** Every call of a traced function, in the order they started. */
  readonly calls: TracedCall[] = [];
  /** Tracer calls that happened outside any call of a traced function (a bug if non-empty). */
  readonly stray: TraceRecord[] = [];
  readonly changes: TracingChange[] = [];
  private readonly fns = new Set<bigint>();
  private readonly active: (TracedCall | undefined)[];
  private readonly observers: InstructionObserver[] = [];
  private nextFree: bigint;

  constructor(o: TracerSimOptions) {
    if (!Number.isInteger(o.cpus) || o.cpus < 2 || o.cpus > 8) throw new UsageError(`a tracer simulator needs 2..8 CPUs, got ${o.cpus}`);
    this.sk = bootSmp(o.variant, o.cpus);
    this.smp = new Smp(this.sk.k.m, { fetch: o.fetch ?? "sdm" });
    this.active = new Array<TracedCall | undefined>(o.cpus).fill(undefined);
    this.nextFree = this.sk.k.L.siteText;
    this.sk.onTrace = (r) => {
      const c = this.active[r.cpu];
      if (c === undefined) this.stray.push(r);
      else c.traces++;
    };
    this.sk.k.m.onInstruction((c, addr, insn) => this.onInsn(c, addr, insn));
    for (const c of this.sk.k.m.cpus) { c.rip = this.smp.idle; c.flags |= F.IF; } // idle until given work
  }

  /** The kernel model underneath (machine, symbols, events). */
  get k() { return this.sk.k; }

  /** Every traced call, in order. */
  get trace(): readonly TraceRecord[] { return this.sk.trace; }

  /** The first oops (die) the kernel reported, if any. */
  get died(): KernelEvent | undefined { return this.sk.k.events.find((e) => e.kind === "die"); }

  /** Adds an observer of every executed instruction (site accounting, coverage). */
  observe(fn: InstructionObserver): void { this.observers.push(fn); }

  /** The address the next `load` will use. */
  get here(): bigint { return this.nextFree; }

  /** Allocates `len` bytes of kernel text (16-byte aligned) and loads `bytes` there. */
  load(bytes: readonly number[]): bigint {
    const at = this.nextFree;
    if (at + BigInt(bytes.length) > this.sk.k.L.siteText + 0x10000n) throw new UsageError("tracer simulator: out of kernel text");
    this.sk.k.m.load(at, bytes);
    this.nextFree = (at + BigInt(bytes.length) + 15n) & ~15n;
    return at;
  }

  /**
   * A traced function: a 5-byte nop as its fentry site (`call __fentry__` patched out at
   * boot), then `body` (default `ret`). Declared as an ftrace record. Returns its address.
   */
  defineTracedFunction(body: readonly number[] = [0xc3]): bigint {
    const at = this.load([...FTRACE_NOP5, ...body]);
    this.fns.add(at);
    this.sk.declareFtraceSites([at]);
    return at;
  }

  /** Makes CPU `cpu` call `fns` in turn forever (`1: call f1; call f2; …; jmp 1b`), interrupts on. */
  loopCalling(cpu: number, fns: readonly bigint[]): void {
    if (!Number.isInteger(cpu) || cpu < 0 || cpu >= this.smp.n) throw new UsageError(`no CPU ${cpu}`);
    if (this.smp.hasTask(cpu)) throw new UsageError(`CPU ${cpu} runs a patcher`);
    const at = this.nextFree;
    const code: number[] = [];
    for (const f of fns) {
      const rel = Number(BigInt.asIntN(32, f - (at + BigInt(code.length) + 5n)));
      code.push(0xe8, rel & 0xff, (rel >>> 8) & 0xff, (rel >>> 16) & 0xff, (rel >>> 24) & 0xff);
    }
    const back = -(code.length + 5);
    code.push(0xe9, back & 0xff, (back >>> 8) & 0xff, (back >>> 16) & 0xff, (back >>> 24) & 0xff);
    this.start(cpu, this.load(code));
  }

  /** Makes CPU `cpu` execute code at `rip` (kernel mode, interrupts on); its stack is the runner's. */
  start(cpu: number, rip: bigint): void {
    if (!Number.isInteger(cpu) || cpu < 0 || cpu >= this.smp.n) throw new UsageError(`no CPU ${cpu}`);
    if (this.smp.hasTask(cpu)) throw new UsageError(`CPU ${cpu} runs a patcher`);
    const c = this.sk.k.m.cpus[cpu];
    c.rip = rip;
    c.flags |= F.IF;
    c.halted = false;
  }

  /** Runs any patcher (a generator of PatchSteps) as a task on CPU `cpu`. */
  spawnPatcher(cpu: number, g: Patcher, onStart?: (step: number) => void, onEnd?: (step: number) => void): void {
    const smp = this.smp;
    smp.spawn(cpu, function* (ctx) {
      onStart?.(smp.stepCount - 1);
      yield* patcherTask(ctx, g);
      onEnd?.(smp.stepCount - 1);
    });
  }

  /** Starts enabling tracing of `sites` (default: every traced function) on CPU `cpu`. */
  enableTracing(cpu = 0, sites?: readonly bigint[]): TracingChange {
    return this.change(true, cpu, sites);
  }

  /** Starts disabling tracing of `sites` (default: every traced function) on CPU `cpu`. */
  disableTracing(cpu = 0, sites?: readonly bigint[]): TracingChange {
    return this.change(false, cpu, sites);
  }

  private change(enable: boolean, cpu: number, sites: readonly bigint[] | undefined): TracingChange {
    const s = sites ?? [...this.fns];
    for (const x of s) if (!this.fns.has(x)) throw new UsageError(`0x${x.toString(16)} is not a traced function`);
    const ch: TracingChange = { enable, cpu, sites: s, start: undefined, end: undefined };
    this.changes.push(ch);
    this.spawnPatcher(cpu, this.sk.ftraceReplaceCode(s, enable), (t) => { ch.start = t; }, (t) => { ch.end = t; });
    return ch;
  }

  /**
   * Runs the CPUs under `s` until `o.until` (default: the patchers are done), the budget, or
   * an oops (a die() the kernel reports ends the run).
   */
  run(s: Scheduler, o: SmpRunOptions = {}): SmpResult {
    const until = o.until ?? ((x: Smp) => x.tasksDone);
    return this.smp.run(s, { ...o, until: (x) => this.died !== undefined || until(x) });
  }

  /** Calls of traced functions on CPU `cpu` (all CPUs by default). */
  callsOn(cpu?: number): TracedCall[] {
    return cpu === undefined ? this.calls : this.calls.filter((c) => c.cpu === cpu);
  }

  private onInsn(c: Cpu, addr: bigint, insn: Insn): void {
    const i = this.sk.k.m.cpus.indexOf(c);
    const step = this.smp.stepCount - 1;
    for (const o of this.observers) o(i, c, addr, insn, step);
    if ((c.flags & F.IF) === 0) return; // inside a handler
    const cur = this.active[i];
    if (cur !== undefined && addr === cur.fn + 5n) {
      cur.end = step;
      this.active[i] = undefined;
    }
    if (this.fns.has(addr)) {
      const b = insn.bytes;
      const fetched = b[0] === 0xcc ? "int3" : b[0] === 0xe8 ? "call" : b.length === 5 && b.every((x, j) => x === FTRACE_NOP5[j]) ? "nop" : "other";
      const call: TracedCall = { cpu: i, fn: addr, start: step, end: undefined, traces: 0, fetched };
      this.calls.push(call);
      this.active[i] = call;
    }
  }
}
