import { Code, Register as R } from "iced-x86";
import { Assembler, mem, reg } from "../asm/index.js";
import type { HostCall } from "../machine/host.js";
import { fixupFrame, GPRS, saveAll, unwindEspfixStack } from "./entry-32-macros.js";
import { v53StubOptions } from "./entry-32.js";
import { asmExtable, fixupException } from "./extable.js";
import type { Kernel } from "./kernel.js";
import { PT_REGS_32, type PtRegs, userMode } from "./pt-regs.js";

/** X86_TRAP_GP and X86_TRAP_IRET (arch/x86/include/asm/trapnr.h; 32 is the software "IRET exception"). */
const X86_TRAP_GP = 13, X86_TRAP_IRET = 32;

/** The fault's frame as the C handler sees it, for the event it reports. */
function frameOf(regs: PtRegs): { ip: bigint; cs: number; ss: number } {
  return { ip: regs.ip, cs: regs.lo32("cs") & 0xffff, ss: regs.lo32("ss") & 0xffff };
}

/**
 * do_general_protection — arch/x86/kernel/traps.c v5.3: a kernel-mode #GP is fixed up through
 * the exception table (fixup_exception) or oopses with die("general protection fault"); a
 * user-mode #GP forces SIGSEGV on the task. (No VM86, no UMIP emulation, no notifiers.)
 */
export function doGeneralProtection(k: Kernel, regs: PtRegs): void {
  if (!userMode(regs)) {
    if (fixupException(k, regs, X86_TRAP_GP)) return;
    k.report({ kind: "die", what: "general protection fault", ip: regs.ip });
    return;
  }
  k.report({ kind: "signal", signal: "SIGSEGV", what: "general protection fault", ...frameOf(regs) });
}

/**
 * do_iret_error — arch/x86/kernel/traps.c v5.3 (`DO_ERROR(X86_TRAP_IRET, SIGILL, ILL_BADSTK,
 * IP, "iret exception", iret_error)`, through do_trap): reached from iret_exc with pt_regs
 * built over the frame the IRET faulted on. For a return to user mode that frame is the
 * user's, so the task gets SIGILL; a kernel-mode frame tries the exception table, then
 * oopses with die("iret exception").
 */
export function doIretError(k: Kernel, regs: PtRegs): void {
  if (!userMode(regs)) {
    if (fixupException(k, regs, X86_TRAP_IRET)) return;
    k.report({ kind: "die", what: "iret exception", ip: regs.ip });
    return;
  }
  k.report({ kind: "signal", signal: "SIGILL", what: "iret exception", ...frameOf(regs) });
}

/**
 * The i386 #GP path and the IRET fix-up (entry_32.S), assembled at `at` after the int3 stub,
 * whose return paths it uses:
 * - `general_protection`: `pushl $do_general_protection; jmp common_exception` (the CPU has
 *   pushed the error code into the orig_eax slot);
 * - `iret_exc` (.fixup): `pushl $0; pushl $do_iret_error; jmp common_exception`, and
 *   `_ASM_EXTABLE(.Lirq_return, iret_exc)`;
 * - `common_exception`: for a v5.3-style stub as v5.3 with its Nov 2019 fixes has it —
 *   `SAVE_ALL switch_stacks=1 skip_gs=1 unwind_espfix=1` (back from the ESPFIX stack before
 *   FIXUP_FRAME, a1a338e5b6fe), the function from the gs slot, the error code from orig_eax
 *   (then -1), `call *%edi`, `jmp ret_from_exception`; for the older stubs a reduced
 *   SAVE_ALL (segment slots as 0, no FIXUP_FRAME) and `jmp restore_all`.
 * Installs the #GP gate (interrupt gate, DPL 0, as idt.c's INTG). Returns the end address.
 */
export function assembleIretFixup32(k: Kernel, at: bigint): bigint {
  const gp = k.host("do_general_protection", (call: HostCall) => doGeneralProtection(k, k.regsArg(call)));
  const iretError = k.host("do_iret_error", (call: HostCall) => doIretError(k, k.regsArg(call)));
  const stub = v53StubOptions(k);
  const a = new Assembler(32);
  const common = a.label("common_exception");
  const gpEntry = a.label("general_protection");
  const iretExc = a.label("iret_exc");
  a.bind(common);
  if (stub !== undefined) {
    const late = stub.espfixUnwoundLate === true;
    saveAll(a, { skipGs: true, unwindEspfix: !late, fixupFrame: (b) => fixupFrame(b, stub.neverFixup === true) });
    if (late) unwindEspfixStack(a);                                     // v5.3/v5.4: after SAVE_ALL (EAX is saved)
  } else {
    for (let i = 0; i < 3; i++) a.ins(Code.Pushd_imm8, 0);             // fs, es, ds
    for (const r of GPRS) a.ins(Code.Push_r32, reg(r));
  }
  a.ins(Code.Mov_r32_rm32, reg(R.EDI), mem(R.ESP, PT_REGS_32.gs));      // the function address
  if (stub === undefined) a.ins(Code.Mov_rm32_imm32, mem(R.ESP, PT_REGS_32.gs), 0);
  a.ins(Code.Mov_r32_rm32, reg(R.EDX), mem(R.ESP, PT_REGS_32.orig_ax)); // the error code
  a.ins(Code.Mov_rm32_imm32, mem(R.ESP, PT_REGS_32.orig_ax), -1);       // no syscall to restart
  a.ins(Code.Mov_rm32_r32, reg(R.EAX), reg(R.ESP));                     // pt_regs
  a.ins(Code.Call_rm32, reg(R.EDI));
  a.branch(Code.Jmp_rel32_32, k.addr("ret_from_exception"));
  a.bind(gpEntry);
  a.ins(Code.Pushd_imm32, Number(BigInt.asIntN(32, gp)));
  a.branch(Code.Jmp_rel32_32, common);
  a.bind(iretExc);
  a.ins(Code.Pushd_imm8, 0);                                            // no error code
  a.ins(Code.Pushd_imm32, Number(BigInt.asIntN(32, iretError)));
  a.branch(Code.Jmp_rel32_32, common);
  const out = a.assemble(at);
  k.m.load(at, out.bytes);
  for (const l of [common, gpEntry, iretExc]) k.sym.set(l.name, out.addressOf(l));
  asmExtable(k, k.addr(".Lirq_return"), k.addr("iret_exc"));
  k.m.setGate(X86_TRAP_GP, { handler: k.addr("general_protection"), dpl: 0, type: "interrupt" });
  return out.end;
}
