import { ftraceInt3HandlerV51, ftraceLocation, isFtraceCaller } from "./ftrace.js";
import type { StagedHandler } from "./int3-staged.js";
import { CALL_INSN_SIZE, INT3_INSN_SIZE, int3EmulateCall, int3EmulateJmp } from "./text-patching.js";

/**
 * do_int3's ftrace entry — arch/x86/kernel/traps.c v5.2 with arch/x86/kernel/ftrace.c v5.1/v5.2,
 * split at its loads of shared globals: `atomic_read(&modifying_ftrace_code)` (sampled after
 * the trap, on the trapping CPU); then ftrace_int3_handler — v5.1 skips the call (§7.1); v5.2
 * emulates a call to ftrace_regs_caller on an fentry site, and on the trampoline's call site
 * reads ftrace_update_func (is_ftrace_caller) and, in a later load, ftrace_update_func_call
 * (the call's new target, or 0: skip it) — two loads another update can fall between (§7.9).
 */
export function ftraceInt3Stages(version: "v5.1" | "v5.2"): StagedHandler {
  const gate = { name: "do_int3:modifying_ftrace_code", run: (k: Parameters<typeof ftraceLocation>[0]) => (k.modifyingFtraceCode !== 0 ? "next" as const : "pass" as const) };
  if (version === "v5.1") return [gate, { name: "ftrace_int3_handler", run: (k, regs) => (ftraceInt3HandlerV51(k, regs) ? "handled" : "pass") }];
  return [
    gate,
    {
      name: "ftrace_int3_handler:site", run: (k, regs) => {
        const ip = regs.ip - BigInt(INT3_INSN_SIZE);
        if (ftraceLocation(k, ip)) {
          int3EmulateCall(regs, k.addr("ftrace_regs_caller"));
          return "handled";
        }
        return isFtraceCaller(k, ip) ? "next" : "pass";
      },
    },
    {
      name: "ftrace_int3_handler:ftrace_update_func_call", run: (k, regs) => {
        const ip = regs.ip - BigInt(INT3_INSN_SIZE);
        const target = k.ftraceUpdateFuncCall;
        if (target === 0n) int3EmulateJmp(regs, ip + BigInt(CALL_INSN_SIZE));
        else int3EmulateCall(regs, target);
        return "handled";
      },
    },
  ];
}
