import type { Kernel } from "./kernel.js";
import type { PtRegs } from "./pt-regs.js";
import { CALL_INSN_SIZE, INT3_INSN_SIZE, int3EmulateCall, int3EmulateJmp } from "./text-patching.js";

/** MCOUNT_INSN_SIZE: the 5-byte `call __fentry__` at a traced function's start. */
export const MCOUNT_INSN_SIZE = 5;

/** ftrace_location(ip): is ip an fentry site in a traced function (kernel/trace/ftrace.c). */
export function ftraceLocation(k: Kernel, ip: bigint): boolean {
  return k.ftraceRecords.has(ip);
}

/** is_ftrace_caller(ip) — arch/x86/kernel/ftrace.c v5.2: the trampoline call site being updated. */
export function isFtraceCaller(k: Kernel, ip: bigint): boolean {
  return k.ftraceUpdateFunc !== 0n && ip === k.ftraceUpdateFunc;
}

export interface FtraceInt3Options {
  /** §7.2 mutant: the ftrace_location case calls ftrace_update_func_call instead. */
  readonly swapTargets?: boolean;
}

/**
 * ftrace_int3_handler — arch/x86/kernel/ftrace.c v5.2 (x86_64): a CPU trapping on an fentry
 * site being modified gets a call to ftrace_regs_caller emulated (so every ftrace_ops,
 * livepatch's included, still runs); on the trampoline's own call site, a call to the new
 * target (or a skip when there is none).
 */
export function ftraceInt3HandlerV52(k: Kernel, regs: PtRegs, o: FtraceInt3Options = {}): boolean {
  const ip = regs.ip - BigInt(INT3_INSN_SIZE);
  if (ftraceLocation(k, ip)) {
    int3EmulateCall(regs, o.swapTargets ? k.ftraceUpdateFuncCall : k.addr("ftrace_regs_caller"));
    return true;
  }
  if (isFtraceCaller(k, ip)) {
    if (k.ftraceUpdateFuncCall === 0n) int3EmulateJmp(regs, ip + BigInt(CALL_INSN_SIZE));
    else int3EmulateCall(regs, o.swapTargets ? k.addr("ftrace_regs_caller") : k.ftraceUpdateFuncCall);
    return true;
  }
  return false;
}

/**
 * ftrace_int3_handler — arch/x86/kernel/ftrace.c v5.1 (before the fix, §7.1): the site is
 * treated as a 5-byte NOP (`regs->ip += MCOUNT_INSN_SIZE - 1`), so the traced call is lost.
 */
export function ftraceInt3HandlerV51(k: Kernel, regs: PtRegs): boolean {
  const ip = regs.ip - BigInt(INT3_INSN_SIZE);
  if (!ftraceLocation(k, ip) && !isFtraceCaller(k, ip)) return false;
  regs.ip = regs.ip + BigInt(MCOUNT_INSN_SIZE - 1);
  return true;
}

/** ftrace_int3_handler — arch/x86/kernel/ftrace.c v5.2 (x86_32): both cases skip the call. */
export function ftraceInt3Handler32V52(k: Kernel, regs: PtRegs): boolean {
  const ip = regs.ip - BigInt(INT3_INSN_SIZE);
  if (!ftraceLocation(k, ip) && !isFtraceCaller(k, ip)) return false;
  int3EmulateJmp(regs, ip + BigInt(CALL_INSN_SIZE));
  return true;
}
