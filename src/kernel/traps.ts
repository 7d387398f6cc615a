import type { HostCall } from "../machine/host.js";
import type { Kernel } from "./kernel.js";
import { type PtRegs, userMode } from "./pt-regs.js";
import { INT3_INSN_SIZE } from "./text-patching.js";

/** The int3 handlers a version runs, in its order. Each returns true when it handled the trap. */
export interface Int3Chain {
  /** ftrace_int3_handler, run first while modifying_ftrace_code (v5.2 and before). */
  readonly ftrace?: (k: Kernel, regs: PtRegs) => boolean;
  /** poke_int3_handler. */
  readonly poke?: (k: Kernel, regs: PtRegs) => boolean;
}

/** notify_die(DIE_INT3, …) — kernel/notifier.c: true when a notifier returned NOTIFY_STOP. */
export function notifyDieInt3(k: Kernel, regs: PtRegs): boolean {
  for (const n of k.dieNotifiers) if (n(regs)) return true;
  return false;
}

/**
 * do_int3 — arch/x86/kernel/traps.c v5.2 dispatch (spec §5.1): ftrace first ("everything
 * else may cause a recursive crash"), then poke_int3_handler, then (no kgdb, no kprobes
 * modeled) the die notifiers, then do_trap: SIGTRAP for user mode, die("int3") for kernel
 * mode. From v5.6 the chain has no ftrace entry and poke_int3_handler is first.
 */
export function doInt3(k: Kernel, chain: Int3Chain, regs: PtRegs): void {
  if (chain.ftrace !== undefined && k.modifyingFtraceCode !== 0 && chain.ftrace(k, regs)) return;
  if (chain.poke !== undefined && chain.poke(k, regs)) return;
  if (notifyDieInt3(k, regs)) return;
  const ip = regs.ip - BigInt(INT3_INSN_SIZE);
  if (userMode(regs)) {
    k.report({ kind: "sigtrap", ip });
    k.onUserSignal?.(regs); // the ptrace stop before the return to user mode
  } else k.report({ kind: "die", what: "int3", ip });
}

/** Installs do_int3 as a host function (void do_int3(struct pt_regs *regs, long error_code)). */
export function installDoInt3(k: Kernel, chain: Int3Chain): bigint {
  return k.host("do_int3", (call: HostCall) => doInt3(k, chain, k.regsArg(call)));
}

/**
 * Every other vector oopses: a gate to a host function that reports die() with the vector
 * and the faulting RIP read from the hardware frame (the run stops there).
 */
export function installDieGates(k: Kernel, vectors: readonly number[]): void {
  for (const v of vectors) {
    const hasEc = v === 8 || (v >= 10 && v <= 14) || v === 17;
    const handler = k.host(`exc_${v}`, (call) => {
      const c = call.cpu;
      const sp = c.sp;
      const at = sp + BigInt(hasEc ? k.L.word : 0);
      const ip = k.m.bits === 64 ? k.m.read64(at) : BigInt(k.m.read32(at));
      k.report({ kind: "die", what: `exception ${v}`, ip });
      call.noReturn = true;
    });
    k.m.setGate(v, { handler, dpl: 0, ist: 0, type: "interrupt" });
  }
}
