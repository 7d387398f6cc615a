import { UsageError } from "../errors.js";
import { Cpu, type HookAnswer } from "./cpu.js";
import { makeDecode } from "./decoder.js";
import { cachedDecode } from "./decode-cache.js";
import type { ExceptionEvent, RunResult } from "./events.js";
import type { CallingConvention, HostEntry, HostFn } from "./host.js";
import type { Insn } from "./insn.js";
import { Memory } from "./memory.js";
import { Perm } from "./page.js";
import { diffStates, type DiffOptions, loadCpu, type MachineSnapshot, saveCpu, type StateDiff } from "./state.js";
import { lldt } from "./segments.js";
import { encodeDescriptor, type Gate, type Gdt, linuxGdt32, linuxGdt64, SEL32, SEL64 } from "./tables.js";
import { CpuFault } from "./events.js";
import { hiOf, loOf, toBig } from "./u64.js";

export interface MachineOptions {
  /** 64 for long mode (64-bit code segment), 32 for protected mode. */
  readonly bits: 32 | 64;
  /** Number of CPUs sharing memory (default 1). */
  readonly cpus?: number;
}

export interface RunOptions {
  /** Instruction budget (default 1,000,000). */
  readonly maxSteps?: number;
  /** Stop when RIP reaches this address (before executing it). */
  readonly until?: bigint;
  /** Which CPU runs (default 0). */
  readonly cpu?: number;
}

/** A hook that reports a write: address, size in bytes. */
export type WriteHook = (addr: bigint, size: number) => void;

/**
 * An x86 machine: memory shared by one or more CPUs, host functions, hooks, snapshots.
 * Nothing in it knows about Linux. The CPUs start at CPL 0 with Linux's GDT layout as a
 * typed table (64-bit: CS 0x10, SS 0x18; 32-bit: CS 0x60, SS 0x68 and, as Linux runs, DS =
 * ES = __USER_DS 0x7b, FS = GS null), flat segments, IF clear. `setGdt` puts a GDT in
 * simulated memory.
 */
export class Machine {
  readonly bits: 32 | 64;
  readonly mem = new Memory();
  readonly cpus: Cpu[] = [];
  private readonly hostTable = new Map<bigint, HostEntry>();
  private writeHooks: WriteHook[] = [];

  constructor(opts: MachineOptions) {
    if (opts.bits !== 32 && opts.bits !== 64) throw new UsageError(`bits must be 32 or 64, got ${String(opts.bits)}`);
    const n = opts.cpus ?? 1;
    if (!Number.isInteger(n) || n < 1 || n > 8) throw new UsageError(`cpus must be 1..8, got ${n}`);
    this.bits = opts.bits;
    const decode = cachedDecode(makeDecode(this.hostTable), this.hostTable);
    for (let i = 0; i < n; i++) {
      const c = new Cpu(this.mem, opts.bits, decode);
      if (opts.bits === 64) { c.gdt = linuxGdt64(); c.setCs(SEL64.KERNEL_CS); c.ss = SEL64.KERNEL_DS; }
      else { c.gdt = linuxGdt32(); c.setCs(SEL32.KERNEL_CS); c.ss = SEL32.KERNEL_DS; c.ds = SEL32.USER_DS; c.es = SEL32.USER_DS; c.fs = 0; c.gs = 0; }
      this.cpus.push(c);
    }
  }

  /** CPU 0. */
  get cpu(): Cpu { return this.cpus[0]; }

  /** Maps memory; perm is a combination of Perm.R/W/X/U (default RW). */
  map(addr: bigint, size: number, perm: number = Perm.R | Perm.W): this {
    this.mem.map(addr, size, perm);
    return this;
  }

  /** Writes bytes regardless of write protection (a loader). */
  load(addr: bigint, bytes: Uint8Array | readonly number[]): this {
    this.mem.load(addr, bytes);
    return this;
  }

  /**
   * Places a host function at `addr`: when a CPU executes that address, `fn` runs with
   * the arguments of the calling convention, then the machine performs `ret`. The byte at
   * `addr` is set to 0xCC so nothing else can execute there; the page must be executable.
   */
  defineHost(addr: bigint, name: string, fn: HostFn, conv: CallingConvention = this.bits === 64 ? "sysv64" : "regparm3"): this {
    const a = BigInt.asUintN(this.bits, addr);
    const p = this.mem.permOf(a);
    if (p === undefined || !(p & Perm.X)) throw new UsageError(`host function ${name} at 0x${a.toString(16)}: page not mapped executable`);
    if (conv === "sysv64" && this.bits !== 64) throw new UsageError(`sysv64 host function ${name} on a 32-bit machine`);
    if (conv !== "sysv64" && this.bits !== 32) throw new UsageError(`${conv} host function ${name} on a 64-bit machine`);
    this.hostTable.set(a, { name, fn, conv });
    this.mem.load(a, [0xcc]);
    return this;
  }

  /** The host function at an address, if any. */
  hostAt(addr: bigint): HostEntry | undefined { return this.hostTable.get(addr); }

  /** Installs an IDT gate on every CPU. */
  setGate(vector: number, gate: Partial<Gate> & { handler: bigint }): this {
    if (!Number.isInteger(vector) || vector < 0 || vector > 255) throw new UsageError(`vector must be 0..255, got ${vector}`);
    const g: Gate = {
      selector: this.bits === 64 ? SEL64.KERNEL_CS : SEL32.KERNEL_CS, dpl: 0, ist: 0, type: "interrupt", present: true, ...gate,
    };
    if (this.bits === 32 && g.ist !== 0) throw new UsageError("IST exists only in 64-bit mode");
    if (g.ist < 0 || g.ist > 7) throw new UsageError(`IST index must be 0..7, got ${g.ist}`);
    for (const c of this.cpus) c.idt[vector] = g;
    return this;
  }

  /**
   * Puts a GDT in simulated memory (32-bit mode): writes `entries` as descriptors at `base`
   * (mapped; index i at base + 8i, holes as zeros) and points GDTR there (limit 8n − 1) on
   * CPU `cpu`, or on every CPU. Segment registers keep their hidden parts until reloaded, as
   * after LGDT.
   */
  setGdt(base: bigint, entries: Gdt, cpu?: number): this {
    if (this.bits !== 32) throw new UsageError("a GDT in memory is modeled in 32-bit mode only");
    if (cpu !== undefined && this.cpus[cpu] === undefined) throw new UsageError(`no CPU ${cpu}`);
    const n = Math.max(1, entries.length);
    if (n > 8192) throw new UsageError(`a GDT has at most 8192 entries, got ${n}`);
    const bytes = new Uint8Array(8 * n);
    const dv = new DataView(bytes.buffer);
    for (let i = 1; i < entries.length; i++) {
      const d = entries[i];
      if (d === undefined) continue;
      const [lo, hi] = encodeDescriptor(d);
      dv.setInt32(8 * i, lo, true); dv.setInt32(8 * i + 4, hi, true);
    }
    if (!this.mem.isMapped(base) || !this.mem.isMapped(base + BigInt(bytes.length - 1))) throw new UsageError(`GDT at 0x${base.toString(16)}: not mapped`);
    this.mem.load(base, bytes);
    for (const c of cpu === undefined ? this.cpus : [this.cpus[cpu]]) {
      c.setGdtr(true, Number(BigInt.asIntN(32, base)), 8 * n - 1);
    }
    return this;
  }

  /** LLDT on CPU `cpu` (default 0) from outside: a bad selector is a UsageError. */
  loadLdt(sel: number, cpu = 0): this {
    const c = this.cpus[cpu];
    if (c === undefined) throw new UsageError(`no CPU ${cpu}`);
    const cs = c.cs;
    c.setCs(cs & ~3);
    try { lldt(c, sel); } catch (e) {
      if (e instanceof CpuFault) throw new UsageError(`LDT selector 0x${sel.toString(16)}: ${e.toString()}`);
      throw e;
    } finally { c.setCs(cs); }
    return this;
  }

  /** Runs a CPU; see Cpu.run. */
  run(opts: RunOptions = {}): RunResult {
    const c = this.cpus[opts.cpu ?? 0];
    if (!c) throw new UsageError(`no CPU ${opts.cpu}`);
    const max = opts.maxSteps ?? 1_000_000;
    if (!Number.isInteger(max) || max < 0) throw new UsageError(`maxSteps must be a non-negative integer, got ${max}`);
    return c.run(max, opts.until);
  }

  // ---- hooks (Unicorn-style) -------------------------------------------------------------

  /** Calls `fn` before every instruction; returning "stop" ends the run. Returns an unhook function. */
  onInstruction(fn: (cpu: Cpu, addr: bigint, insn: Insn) => HookAnswer): () => void {
    const bits = this.bits;
    for (const c of this.cpus) {
      c.hooks.instruction = (cpu, lo, hi, insn) => fn(cpu, bits === 64 ? toBig(lo, hi) : BigInt(lo >>> 0), insn);
    }
    return () => { for (const c of this.cpus) c.hooks.instruction = undefined; };
  }

  /** Calls `fn` before every exception or interrupt delivery; "stop" ends the run before it. */
  onException(fn: (cpu: Cpu, e: ExceptionEvent) => HookAnswer): () => void {
    for (const c of this.cpus) c.hooks.exception = fn;
    return () => { for (const c of this.cpus) c.hooks.exception = undefined; };
  }

  /** Calls `fn` after every memory write (by a CPU, delivery, or host code). */
  onWrite(fn: WriteHook): () => void {
    this.writeHooks.push(fn);
    this.syncWatch();
    return () => { this.writeHooks = this.writeHooks.filter((h) => h !== fn); this.syncWatch(); };
  }

  /** Calls `fn` before every data read (instruction fetches are not reads here). */
  onRead(fn: WriteHook): () => void {
    const bits = this.bits;
    this.mem.readWatch = (lo, hi, size) => fn(bits === 64 ? toBig(lo, hi) : BigInt(lo >>> 0), size);
    return () => { this.mem.readWatch = null; };
  }

  private syncWatch(): void {
    const hooks = this.writeHooks;
    const bits = this.bits;
    this.mem.watch = hooks.length === 0 ? null : (lo, hi, size) => {
      const a = bits === 64 ? toBig(lo, hi) : BigInt(lo >>> 0);
      for (const h of hooks) h(a, size);
    };
  }

  // ---- snapshots ----------------------------------------------------------------------------

  /** Freezes the whole machine; cheap (memory pages are shared copy-on-write). */
  snapshot(): MachineSnapshot {
    return { cpus: this.cpus.map(saveCpu), mem: this.mem.snapshot() };
  }

  restore(s: MachineSnapshot): void {
    if (s.cpus.length !== this.cpus.length) throw new UsageError("snapshot has another number of CPUs");
    this.mem.restore(s.mem);
    s.cpus.forEach((st, i) => loadCpu(this.cpus[i], st));
  }

  /** Differences between two snapshots. */
  static diff(a: MachineSnapshot, b: MachineSnapshot, opts?: DiffOptions): StateDiff {
    return diffStates(a, b, opts);
  }

  // ---- convenience access (through the CPU's memory checks; bigint at the edge only) ----
  read64(addr: bigint): bigint {
    const lo = loOf(addr), hi = hiOf(addr);
    const v = this.mem.read64(lo, this.bits === 64 ? hi : 0);
    return toBig(v, this.mem.rhi);
  }
  read32(addr: bigint): number {
    return this.mem.read32(loOf(addr), this.bits === 64 ? hiOf(addr) : 0) >>> 0;
  }
  write64(addr: bigint, v: bigint): void {
    this.mem.write64(loOf(addr), this.bits === 64 ? hiOf(addr) : 0, loOf(v), hiOf(v));
  }
  write32(addr: bigint, v: number): void {
    this.mem.write32(loOf(addr), this.bits === 64 ? hiOf(addr) : 0, v | 0);
  }
}
