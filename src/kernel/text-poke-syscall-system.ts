import { Assembler } from "../asm/index.js";
import { UsageError } from "../errors.js";
import type { Cpu } from "../machine/cpu.js";
import type { HostCall } from "../machine/host.js";
import type { Machine } from "../machine/machine.js";
import { Perm } from "../machine/page.js";
import { SEL64 } from "../machine/tables.js";
import { Kernel } from "./kernel.js";
import type { PatchStep } from "./patch-step.js";
import { PtRegs, userMode } from "./pt-regs.js";
import { emitIdtEntry } from "./text-poke-syscall-entry.js";
import { type CpuContext, type FetchModel, runPatchSteps, type Scheduler, Smp, type SmpTask } from "./text-poke-syscall-smp.js";

/** ia32 system call numbers (arch/x86/syscalls/syscall_32.tbl; 351 is the seed's text_poke). */
export const NR_EXIT = 1;
export const NR_TEXT_POKE_32 = 351;
/** The x86-64 number the seed adds to syscall_64.tbl (the machine has no SYSCALL; see README). */
export const NR_TEXT_POKE_64 = 314;
export const IA32_SYSCALL_VECTOR = 0x80;
export const ENOSYS = 38;

/** Per-CPU kernel stacks (the rest of the kernel side is Kernel's LAYOUT_64 and the Smp's layout). */
export const SYSTEM_STACKS = {
  /** CPU i's kernel stack: base + i * stride, THREAD_SIZE bytes. */
  base: 0xffffc90000200000n,
  stride: 0x10000n,
  threadSize: 0x4000,
} as const;

/** What the model reports while it runs. */
export type SystemEvent =
  | { readonly kind: "sigtrap"; readonly cpu: number; readonly tid: number; readonly ip: bigint }
  | { readonly kind: "redirect"; readonly cpu: number; readonly tid: number; readonly savedIp: bigint; readonly handler: bigint }
  | { readonly kind: "fault"; readonly cpu: number; readonly vector: number; readonly ip: bigint; readonly user: boolean }
  | { readonly kind: "poke"; readonly cpu: number; readonly step: PokeStep; readonly addr: bigint }
  | { readonly kind: "exit"; readonly cpu: number; readonly tid: number };

/** Protocol steps of the syscall, in the order a correct call takes them. */
export type PokeStep = "lock" | "int3" | "sync1" | "tail" | "sync2" | "first" | "sync3" | "unlock";

/** A thread of a user process: it runs on one CPU until it exits. */
export interface Task {
  readonly tid: number;
  /** The address space (current->mm): tasks of one process share it. */
  readonly mm: number;
  exited: boolean;
}

/**
 * Kernel work that may block, in the patchers' vocabulary (patch-step.ts): a `poke` is one
 * byte of text_poke per step, a `sync` sends the IPIs and waits for them, a `wait` blocks
 * until its condition holds, a `store` is one step. The return value is the syscall's result.
 */
export type KernelWork = Generator<PatchStep, number, void>;

/** A system call: arguments (ebx, ecx, edx, esi, edi, zero-extended) → result or blocking work. */
export type Syscall = (sys: TextPokeSystem, cpu: number, args: readonly bigint[]) => number | KernelWork;

/** The int3 path: returns true when the trap was handled (poke_int3_handler's answer). */
export type Int3Handler = (sys: TextPokeSystem, cpu: number, regs: PtRegs) => boolean;

export interface SystemRun {
  /**
   * done: every task exited; steps: the budget ran out; deadlock: nobody can step while a
   * task is alive; fault: a CPU stopped (an oops, a triple fault, something not modeled).
   */
  readonly reason: "done" | "steps" | "deadlock" | "fault";
  readonly steps: number;
  readonly detail?: string;
}

export interface TextPokeSystemOptions {
  /** Cross-modifying-code fetch model (src/smp): `strict` (default) or `sdm`. */
  readonly fetch?: FetchModel;
}

/**
 * A small x86-64 SMP system for user programs and the text_poke syscall: a Kernel model's
 * machine with N CPUs under the SMP runner (src/smp: scheduler, call-function IPIs,
 * sync_core, fetch model), kernel entries as real code (int $0x80, int3), the kernel's C
 * functions as host functions, and tasks (threads of processes) running ring-3 code.
 *
 * System calls are reached with `int $0x80` (the ia32 entry: number in eax, arguments in
 * ebx, ecx, edx, esi, edi, result in eax) because the machine does not model SYSCALL; user
 * addresses therefore live below 4 GiB. do_int80_syscall_32 is an SMP host task: a call that
 * blocks (the text_mutex, the IPIs of on_each_cpu) keeps its CPU, one protocol step per
 * scheduler step, with interrupts enabled as in do_int80_syscall_32.
 */
export class TextPokeSystem {
  /** The kernel model (machine, host functions, symbols, the bp_* globals of text_poke_bp). */
  readonly k: Kernel;
  readonly m: Machine;
  readonly smp: Smp;
  readonly events: SystemEvent[] = [];
  readonly tasks: (Task | undefined)[];
  readonly syscalls = new Map<number, Syscall>();
  int3Handler: Int3Handler | undefined;
  /** Processes killed by a signal: mm → the signal. */
  readonly killed = new Map<number, { readonly signal: "SIGTRAP" | "SIGSEGV"; readonly ip: bigint; readonly cpu: number }>();

  // Kernel globals the seed adds or uses (arch/x86/kernel/alternative.c); bp_int3_addr,
  // bp_int3_handler and bp_patching_in_progress are Kernel's (k.bpInt3Addr, …).
  /** text_mutex: the CPU holding it, or null. */
  textMutexOwner: number | null = null;
  /** bp_target_mm: the mm of the process whose text is being patched, or null. */
  bpTargetMm: number | null = null;

  private live = 0;
  /** CPUs whose task was killed while it was running user code somewhere: park them when they can be. */
  private readonly toPark = new Set<number>();
  private fatal: string | undefined;

  constructor(cpus: number, opts: TextPokeSystemOptions = {}) {
    if (!Number.isInteger(cpus) || cpus < 1 || cpus > 8) throw new UsageError(`cpus must be 1..8, got ${cpus}`);
    const S = SYSTEM_STACKS;
    this.k = new Kernel(64, cpus);
    this.m = this.k.m;
    this.m.cpus.forEach((c, i) => {
      const base = S.base + BigInt(i) * S.stride;
      this.m.map(base, S.threadSize, Perm.R | Perm.W);
      c.tss.sp[0] = base + BigInt(S.threadSize);
      c.sp = c.tss.sp[0];
    });
    this.smp = new Smp(this.m, { fetch: opts.fetch ?? "strict" });
    this.tasks = new Array<Task | undefined>(cpus).fill(undefined);

    const int80 = this.k.L.host + 0xff00n;
    this.k.sym.set("do_int80_syscall_32", int80);
    this.smp.defineHostTask(int80, "do_int80_syscall_32", (call, ctx) => this.doInt80(call, ctx.cpu, ctx));
    const int3 = this.k.host("do_int3", (call) => this.doInt3(call));
    for (let v = 0; v < 32; v++) {
      if (v === 3 || v === 2 || v === 15 || (v > 19 && v < 32)) continue;
      const h = this.k.host(`exc_${v}`, (call) => this.badException(call, v));
      this.m.setGate(v, { handler: h, dpl: 0 });
    }

    const a = new Assembler(64);
    const lInt80 = a.label("entry_INT80_compat");
    const lInt3 = a.label("int3");
    a.bind(lInt80); emitIdtEntry(a, { handler: int80, origAx: "rax", irqsOn: true });
    a.bind(lInt3); emitIdtEntry(a, { handler: int3, origAx: -1, irqsOn: false });
    const out = a.assemble(this.k.L.text);
    this.m.load(this.k.L.text, out.bytes);
    for (const l of [lInt80, lInt3]) this.k.sym.set(l.name, out.addressOf(l));
    // int3 and int $0x80 are reachable from ring 3 (DPL 3); both are interrupt gates (IF=0 on entry).
    this.m.setGate(IA32_SYSCALL_VECTOR, { handler: out.addressOf(lInt80), dpl: 3 });
    this.m.setGate(3, { handler: out.addressOf(lInt3), dpl: 3 });
    this.m.cpus.forEach((c) => this.goIdle(c));
    this.syscalls.set(NR_EXIT, (sys, cpu) => sys.exitTask(cpu));
  }

  get cpuCount(): number { return this.m.cpus.length; }

  /** Maps user memory (the U bit is added) and optionally loads bytes into it. */
  mapUser(addr: bigint, size: number, perm: number, bytes?: Uint8Array | readonly number[]): this {
    if (addr < 0n || addr + BigInt(size) > 0x1_0000_0000n) throw new UsageError(`user memory must lie below 4 GiB (int $0x80 passes 32-bit pointers), got 0x${addr.toString(16)}`);
    this.m.map(addr, size, perm | Perm.U);
    if (bytes !== undefined) this.m.load(addr, bytes);
    return this;
  }

  /** Starts a task in ring 3 on an idle CPU: rip, rsp, and optional register values (by number). */
  startTask(cpu: number, t: { tid: number; mm: number; rip: bigint; rsp: bigint; regs?: Readonly<Record<number, bigint>> }): void {
    const c = this.cpuAt(cpu);
    const cur = this.tasks[cpu];
    if (cur !== undefined && !cur.exited) throw new UsageError(`CPU ${cpu} already runs task ${cur.tid}`);
    this.tasks[cpu] = { tid: t.tid, mm: t.mm, exited: false };
    this.live++;
    for (let r = 0; r < 16; r++) c.setReg(r, 0n);
    for (const [r, v] of Object.entries(t.regs ?? {})) c.setReg(Number(r), v);
    c.setCs(SEL64.USER_CS | 3);
    c.ss = SEL64.USER_DS | 3;
    c.rip = t.rip;
    c.sp = t.rsp;
    c.flags = 0x202;
    c.halted = false;
  }

  /** Tasks not yet exited. */
  alive(): number { return this.live; }

  /** Runs the CPUs under a scheduler until every task exited (or the budget is used up). */
  run(s: Scheduler, maxSteps = 50_000_000): SystemRun {
    const r = this.smp.run(s, { maxSteps, trace: false, until: () => this.boundary() });
    if (this.fatal !== undefined) return { reason: "fault", steps: r.steps, detail: this.fatal };
    switch (r.reason) {
      case "until": return { reason: "done", steps: r.steps };
      case "steps": return { reason: "steps", steps: r.steps };
      case "idle": case "deadlock": case "schedule":
        return { reason: "deadlock", steps: r.steps, detail: `${r.reason}: ${this.live} task(s) alive and no CPU can step` };
      default:
        return { reason: "fault", steps: r.steps, detail: `CPU ${r.cpu}: ${r.cpuReason}${r.detail ? ` (${r.detail})` : ""}` };
    }
  }

  /** Between steps: park killed tasks' CPUs once they are back in user mode; stop when all exited. */
  private boundary(): boolean {
    if (this.toPark.size !== 0) {
      for (const i of this.toPark) {
        const c = this.m.cpus[i];
        if (c.cpl === 3) { this.goIdle(c); this.toPark.delete(i); }
      }
    }
    return this.live === 0 || this.fatal !== undefined;
  }

  /** A CPU's current task (throws when it runs none). */
  taskOn(cpu: number): Task {
    const t = this.tasks[cpu];
    if (t === undefined) throw new RangeError(`no task on CPU ${cpu}`);
    return t;
  }

  /** The task exits (sys_exit): its CPU goes idle when the call returns. */
  exitTask(cpu: number): number {
    const t = this.taskOn(cpu);
    this.markExited(t);
    this.events.push({ kind: "exit", cpu, tid: t.tid });
    return 0;
  }

  /**
   * Kills every task of a process (a fatal signal's default action). A thread inside a
   * system call finishes it first; one elsewhere stops when it is next in user mode.
   */
  killProcess(mm: number, signal: "SIGTRAP" | "SIGSEGV", ip: bigint, cpu: number): void {
    if (!this.killed.has(mm)) this.killed.set(mm, { signal, ip, cpu });
    this.tasks.forEach((t, i) => {
      if (t === undefined || t.mm !== mm || t.exited) return;
      this.markExited(t);
      if (i !== cpu && !this.smp.hasTask(i)) this.toPark.add(i);
    });
  }

  private markExited(t: Task): void {
    if (t.exited) return;
    t.exited = true;
    this.live--;
  }

  // ---- kernel C functions (host functions) ----------------------------------------------

  /** do_int80_syscall_32 — arch/x86/entry/common.c (reduced): dispatch on orig_ax, regs->ax = result. */
  private *doInt80(call: HostCall, cpu: number, ctx: CpuContext): SmpTask<void> {
    // A host task's steps run outside the CPU's own step, so memory's privilege may still be
    // another CPU's (a ring-3 one): set it from this CPU's CPL before touching kernel memory.
    call.cpu.setCs(call.cpu.cs);
    const regs = new PtRegs(this.m, call.arg(0));
    const nr = Number(regs.get("orig_ax") & 0xffffffffn);
    const sc = this.syscalls.get(nr);
    const args = (["bx", "cx", "dx", "si", "di"] as const).map((f) => regs.get(f) & 0xffffffffn);
    const r = sc === undefined ? -ENOSYS : sc(this, cpu, args);
    const v = typeof r === "number" ? r : yield* runPatchSteps(ctx, r);
    call.cpu.setCs(call.cpu.cs);
    regs.set("ax", BigInt.asUintN(64, BigInt(v)));
    const t = this.tasks[cpu];
    if (t === undefined || t.exited) this.returnToIdle(call.cpu);
  }

  /** do_int3 — arch/x86/kernel/traps.c (3.13, reduced): poke_int3_handler first, then SIGTRAP (user) or die (kernel). */
  private doInt3(call: HostCall): void {
    const cpu = this.m.cpus.indexOf(call.cpu);
    const regs = new PtRegs(this.m, call.arg(0));
    if (this.int3Handler !== undefined && this.int3Handler(this, cpu, regs)) return;
    const ip = regs.ip - 1n;
    const t = this.tasks[cpu];
    call.noReturn = true;
    if (userMode(regs) && t !== undefined) {
      this.events.push({ kind: "sigtrap", cpu, tid: t.tid, ip });
      this.killProcess(t.mm, "SIGTRAP", ip, cpu);
      this.goIdle(call.cpu);
      return;
    }
    this.fatal = `die: int3 in kernel mode at 0x${ip.toString(16)} on CPU ${cpu}`;
    call.cpu.requestStop("stopped", this.fatal);
  }

  /** Any other exception: user mode → SIGSEGV for the process; kernel mode → the run fails. */
  private badException(call: HostCall, vector: number): void {
    const c = call.cpu;
    const cpu = this.m.cpus.indexOf(c);
    const hasEc = vector === 8 || (vector >= 10 && vector <= 14) || vector === 17;
    const frame = c.sp + (hasEc ? 8n : 0n);
    const ip = this.m.read64(frame);
    const user = (this.m.read64(frame + 8n) & 3n) === 3n;
    this.events.push({ kind: "fault", cpu, vector, ip, user });
    call.noReturn = true;
    const t = this.tasks[cpu];
    if (user && t !== undefined) { this.killProcess(t.mm, "SIGSEGV", ip, cpu); this.goIdle(c); return; }
    this.fatal = `kernel exception ${vector} at 0x${ip.toString(16)} on CPU ${cpu}`;
    c.requestStop("stopped", this.fatal);
  }

  // ---- helpers ----------------------------------------------------------------------------

  private cpuAt(i: number): Cpu {
    const c = this.m.cpus[i];
    if (c === undefined) throw new UsageError(`no CPU ${i} (the system has ${this.cpuCount})`);
    return c;
  }

  /** Puts a CPU in the SMP runner's idle loop on its own kernel stack, interrupts enabled. */
  private goIdle(c: Cpu): void {
    c.setCs(SEL64.KERNEL_CS);
    c.ss = SEL64.KERNEL_DS;
    c.rip = this.smp.idle;
    c.sp = c.tss.sp[0];
    c.flags = 0x202;
  }

  /** do_exit never returns to the caller: the host task's `ret` lands in the idle loop, on a fresh stack. */
  private returnToIdle(c: Cpu): void {
    const top = c.tss.sp[0];
    c.sp = top - 8n;
    this.m.write64(top - 8n, this.smp.idle);
  }
}
