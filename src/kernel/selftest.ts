import type { Kernel } from "./kernel.js";
import type { PtRegs } from "./pt-regs.js";
import { INT3_INSN_SIZE, int3EmulateCall } from "./text-patching.js";

/**
 * The int3 self-test's die notifier (arch/x86/kernel/alternative.c v5.3, int3_exception_notify):
 * for DIE_INT3 in kernel mode at the self-test's site, emulate a call to the target and
 * return NOTIFY_STOP. `emulate` lets mutants substitute their own push.
 */
export function int3SelftestNotifier(
  k: Kernel, site: bigint, target: bigint,
  emulate: (regs: PtRegs, target: bigint) => void = int3EmulateCall,
): (regs: PtRegs) => boolean {
  return (regs) => {
    if ((regs.cs & 3n) === 3n) return false;
    if (regs.ip - BigInt(INT3_INSN_SIZE) !== site) return false;
    emulate(regs, target);
    void k;
    return true;
  };
}
