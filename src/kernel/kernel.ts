import { Machine } from "../machine/machine.js";
import { Perm } from "../machine/page.js";
import type { HostCall, HostFn } from "../machine/host.js";
import { setupGdt32 } from "./gdt-32.js";
import { type KernelLayout, layoutFor } from "./layout.js";
import { PtRegs } from "./pt-regs.js";

/** Something the kernel model reports: a traced call, a signal, an oops. */
export type KernelEvent =
  | { readonly kind: "traced"; readonly ip: bigint; readonly parentIp: bigint }
  | { readonly kind: "sigtrap"; readonly ip: bigint }
  | { readonly kind: "die"; readonly what: string; readonly ip: bigint }
  /** A signal forced on the task by a trap handler (do_trap): SIGILL from do_iret_error, SIGSEGV from a user #GP. */
  | { readonly kind: "signal"; readonly signal: "SIGILL" | "SIGSEGV"; readonly what: string; readonly ip: bigint; readonly cs: number; readonly ss: number }
  | { readonly kind: "warn"; readonly what: string };

/** One entry of a text_poke_bp batch (struct text_poke_loc, alternative.c v5.6+). */
export interface TextPokeLoc {
  readonly addr: bigint;
  /** Length of the new instruction (6 for Jcc.d32). */
  readonly len: number;
  /** Opcode to emulate: 0xe8 CALL, 0xe9 JMP32, 0xeb JMP8, 0xc3 RET, 0x70–0x7f Jcc, 0xcc INT3. */
  readonly opcode: number;
  /** Displacement (for CALL/JMP/Jcc; NOPs are JMP with disp 0). */
  readonly disp: bigint;
  /** `addr` as int32 halves (hi 0 on 32-bit), when its creator gives them: the trap path then compares without BigInt. */
  readonly addrLo?: number;
  readonly addrHi?: number;
  /**
   * `disp` as int32 halves (its two's complement modulo 2^64: dispHi is the sign on 32-bit),
   * when its creator gives them beside addrLo/addrHi: the trap path then adds without BigInt.
   */
  readonly dispLo?: number;
  readonly dispHi?: number;
}

/**
 * A running kernel model: the machine plus the kernel's globals (kept in TypeScript; the
 * C functions that use them are host functions), its symbols, and what it reported.
 */
export class Kernel {
  readonly m: Machine;
  readonly L: KernelLayout;
  readonly sym = new Map<string, bigint>();
  readonly events: KernelEvent[] = [];
  private nextHost: bigint;

  // ftrace (arch/x86/kernel/ftrace.c v5.2)
  modifyingFtraceCode = 0;
  readonly ftraceRecords = new Set<bigint>();
  ftraceUpdateFunc = 0n;
  ftraceUpdateFuncCall = 0n;

  // text_poke_bp (alternative.c): v5.2 single-site detour state, v5.6+ descriptor
  bpPatchingInProgress = false;
  bpInt3Addr = 0n;
  bpInt3Handler = 0n;
  bpDesc: { vec: TextPokeLoc[]; refs: number } = { vec: [], refs: 0 };

  /** The die-notifier chain (notify_die(DIE_INT3, …)): a notifier returns true for NOTIFY_STOP. */
  readonly dieNotifiers: ((regs: PtRegs) => boolean)[] = [];
  /** How the int3 self-test notifier emulates its call (mutants substitute their own). */
  selftestEmulate?: (regs: PtRegs, target: bigint) => void;

  /** The exception table (__ex_table, sorted by address): see extable.ts. */
  readonly extable: { readonly insn: bigint; readonly fixup: bigint }[] = [];
  /**
   * A ptrace stop at the signal a user-mode trap raised: when set, SIGTRAP does not end the
   * run; this runs with the task's saved pt_regs (a debugger's PTRACE_SETREGS, or a later
   * sigreturn, may rewrite them) and the exit path then returns to user mode.
   */
  onUserSignal?: (regs: PtRegs) => void;

  /** `cpus` (default 1): CPUs sharing the machine; each starts with TSS.sp0 at the task stack's top. */
  constructor(bits: 32 | 64, cpus = 1) {
    this.L = layoutFor(bits);
    const L = this.L;
    this.m = new Machine({ bits, cpus });
    this.m.map(L.text, 0x10000, Perm.R | Perm.X)
      .map(L.host, 0x10000, Perm.R | Perm.X)
      .map(L.stack, L.threadSize, Perm.R | Perm.W)
      .map(L.irqStack, L.threadSize, Perm.R | Perm.W)
      .map(L.siteText, 0x10000, Perm.R | Perm.X);
    this.nextHost = L.host;
    for (const c of this.m.cpus) {
      c.tss.sp[0] = L.stack + BigInt(L.threadSize);
      c.tss.ss[0] = bits === 64 ? 0 : L.kernelSs;
    }
    if (bits === 32) setupGdt32(this); // the per-CPU GDT in memory and the segments the kernel runs with
  }

  /** Places a host function (a kernel C function) and names it. */
  host(name: string, fn: HostFn): bigint {
    const a = this.nextHost;
    this.nextHost += 16n;
    this.m.defineHost(a, name, fn);
    this.sym.set(name, a);
    return a;
  }

  /** The address of a symbol (a stub label or a host function). */
  addr(name: string): bigint {
    const a = this.sym.get(name);
    if (a === undefined) throw new RangeError(`no symbol ${name}`);
    return a;
  }

  /** pt_regs view of a host call's first argument. */
  regsArg(call: HostCall, i = 0): PtRegs {
    if (i !== 0) return new PtRegs(this.m, call.arg(i));
    // the first argument as int32 halves: no BigInt on the trap path; the view of the last
    // call again when it is at the same address (a view holds nothing but its address: every
    // trap through one stack passes the same pt_regs, and a view need not be allocated each time)
    const c = call.cpu, r = call.reg0;
    let lo: number, hi: number;
    if (r >= 0) { lo = c.lo[r]; hi = c.bits === 64 ? c.hi[r] : 0; } // (argLo/argHi(0) without the convention's look-ups)
    else { lo = call.argLo(0); hi = 0; }
    const last = this.lastRegs;
    if (last !== null && last.isAt(lo, hi)) { last.endReads(); return last; } // (a view handed out anew has no read window open)
    return (this.lastRegs = new PtRegs(this.m, lo, hi));
  }

  /** The view regsArg returned last (see there). */
  private lastRegs: PtRegs | null = null;

  /** Ends the run with an oops or signal, as the kernel's die()/do_trap() would. */
  report(e: KernelEvent): void {
    this.events.push(e);
    if (e.kind === "die") this.m.cpu.requestStop("stopped", `die: ${e.what}`);
    else if (e.kind === "sigtrap" && this.onUserSignal === undefined) this.m.cpu.requestStop("stopped", "SIGTRAP");
    else if (e.kind === "signal") this.m.cpu.requestStop("stopped", `${e.signal}: ${e.what}`);
  }
}
