import type { Kernel } from "./kernel.js";
import type { PtRegs } from "./pt-regs.js";

/**
 * One exception-table entry (struct exception_table_entry, arch/x86/include/asm/extable.h):
 * the address of an instruction that is allowed to fault, and where to continue when it
 * does. Only the default handler is modeled (ex_handler_default: resume at the fix-up).
 */
export interface ExceptionTableEntry {
  readonly insn: bigint;
  readonly fixup: bigint;
}

/**
 * _ASM_EXTABLE(insn, fixup) (arch/x86/include/asm/asm.h): adds an entry to the kernel's
 * __ex_table, kept sorted by address as sort_main_extable() leaves it at boot.
 */
export function asmExtable(k: Kernel, insn: bigint, fixup: bigint): void {
  const t = k.extable;
  t.push({ insn, fixup });
  t.sort((a, b) => (a.insn < b.insn ? -1 : a.insn > b.insn ? 1 : 0));
}

/**
 * search_exception_tables — kernel/extable.c (v5.3): the entry for exactly this instruction
 * address, by binary search over the sorted table (search_extable, lib/extable.c); modules
 * and BPF tables are not modeled.
 */
export function searchExceptionTables(k: Kernel, ip: bigint): ExceptionTableEntry | undefined {
  const t = k.extable;
  let lo = 0, hi = t.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    const e = t[mid];
    if (e.insn === ip) return e;
    if (e.insn < ip) lo = mid + 1;
    else hi = mid - 1;
  }
  return undefined;
}

/**
 * fixup_exception — arch/x86/mm/extable.c (v5.3): a kernel-mode fault at an instruction the
 * exception table names resumes at the fix-up (ex_handler_default: regs->ip = fixup) and
 * returns true; anything else returns false and the caller oopses. `trapnr` is what the
 * real handlers pass; the default handler ignores it.
 */
export function fixupException(k: Kernel, regs: PtRegs, trapnr: number): boolean {
  void trapnr;
  const e = searchExceptionTables(k, regs.ip);
  if (e === undefined) return false;
  regs.ip = e.fixup;
  return true;
}
