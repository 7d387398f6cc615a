import { Code, Register as R } from "iced-x86";
import { Assembler, mem, reg } from "../asm/index.js";
import type { HostCall } from "../machine/host.js";
import { doGeneralProtection } from "./entry-32-exceptions.js";
import type { Kernel } from "./kernel.js";
import { PT_REGS_64, PtRegs, SIZEOF_PT_REGS_64, userMode } from "./pt-regs.js";

/** X86_TRAP_GP (arch/x86/include/asm/trapnr.h). */
const X86_TRAP_GP = 13;
/** PUSH_AND_CLEAR_REGS's pushes after pt_regs->di and ->si (entry/calling.h): dx first, r15 last. */
const PUSH_AFTER_SI = [R.RDX, R.RCX, R.RAX, R.R8, R.R9, R.R10, R.R11, R.RBX, R.RBP, R.R12, R.R13, R.R14, R.R15];
/** POP_REGS (entry/calling.h): r15 first, di last. */
const POP_ORDER = [...PUSH_AFTER_SI].reverse().concat([R.RSI, R.RDI]);
/** sizeof(struct bad_iret_stack): the error_entry return address, then pt_regs (traps.c v5.3). */
const SIZEOF_BAD_IRET_STACK = 8 + SIZEOF_PT_REGS_64;
/** offsetof(struct bad_iret_stack, regs.ip): what fixup_bad_iret copies from the faulting stack. */
const BAD_IRET_STACK_IP = 8 + PT_REGS_64.ip;

/** The task stack's top as cpu_current_top_of_stack / TSS.sp0 hold it (one stack: no entry trampoline stack modeled). */
function topOfStack(call: HostCall): bigint {
  return call.cpu.tss.sp[0];
}

/**
 * sync_regs — arch/x86/kernel/traps.c v5.3: moves pt_regs built on the entry stack to the
 * top of the task stack (`*regs = *eregs` unless they are already there) and returns where
 * they are now. In this model TSS.sp0 is the task stack's top, so a user-mode entry's
 * pt_regs are already there; only a fixed-up bad IRET's may not be.
 */
export function syncRegs(k: Kernel, call: HostCall): bigint {
  const eregs = call.arg(0);
  const regs = topOfStack(call) - BigInt(SIZEOF_PT_REGS_64);
  if (regs !== eregs) k.m.mem.writeBytes(regs, k.m.mem.readBytes(eregs, SIZEOF_PT_REGS_64));
  return regs;
}

/**
 * fixup_bad_iret — arch/x86/kernel/traps.c v5.3 (v4.15–v5.7 shape, `struct bad_iret_stack
 * *fixup_bad_iret(struct bad_iret_stack *s)`): the #GP was raised by the IRETQ at
 * native_irq_return_iret, and `s` is error_entry's return address followed by the pt_regs
 * of that #GP (a kernel frame). Builds, at TSS.sp0 − sizeof(bad_iret_stack), the stack the
 * fault would have had if it had come from the IRET's target: the five words the IRETQ was
 * popping (ip, cs, flags, sp, ss, read at s->regs.sp) as pt_regs' hardware frame, below
 * them the return address and the registers from `s` (through a temporary, as the kernel's
 * memcpy to `tmp` does). BUG_ON(!user_mode(&new_stack->regs)) oopses with
 * die("fixup_bad_iret: not a user frame"). Returns new_stack (the address of its return-
 * address slot).
 */
export function fixupBadIret(k: Kernel, call: HostCall): bigint {
  const s = call.arg(0);
  const m = k.m.mem;
  const newStack = topOfStack(call) - BigInt(SIZEOF_BAD_IRET_STACK);
  const badRegs = new PtRegs(k.m, s + 8n);
  const tmp = new Uint8Array(SIZEOF_BAD_IRET_STACK);
  tmp.set(m.readBytes(badRegs.sp, 5 * 8), BAD_IRET_STACK_IP);  // the IRET target
  tmp.set(m.readBytes(s, BAD_IRET_STACK_IP), 0);                 // the remainder, from the current stack
  m.writeBytes(newStack, tmp);                                   // update the entry stack
  const regs = new PtRegs(k.m, newStack + 8n);
  if (!userMode(regs)) {
    k.report({ kind: "die", what: "fixup_bad_iret: not a user frame", ip: regs.ip });
    call.noReturn = true;
  }
  return newStack;
}

/** What the general_protection path is built with. */
export interface GeneralProtection64Options {
  /**
   * The address error_entry compares the faulting RIP with (`leaq native_irq_return_iret(%rip),
   * %rcx; cmpq %rcx, RIP+8(%rsp)`); default native_irq_return_iret. A mutant passes another.
   */
  readonly badIretRip?: bigint;
}

/**
 * The x86-64 #GP path (entry/entry_64.S v5.3), assembled at `at`; the int3 stub must have
 * named its IRETQ `native_irq_return_iret`, which this path's exit jumps to as
 * INTERRUPT_RETURN (`jmp native_iret`) does:
 * - `general_protection` (`idtentry general_protection do_general_protection
 *   has_error_code=1`): the CPU pushed the error code into the orig_ax slot; `call
 *   error_entry`; pt_regs in rdi, the error code in rsi, orig_ax := -1; `call
 *   do_general_protection`; then error_exit, reduced: POP_REGS, skip orig_ax, `jmp
 *   native_irq_return_iret` (no ESPFIX64 LDT check, no prepare_exit_to_usermode: a signal
 *   ends the run);
 * - `error_entry`, reduced: PUSH_AND_CLEAR_REGS save_ret=1 (the return address moved below
 *   pt_regs; registers not cleared); `testb $3, CS+8(%rsp)`; from user mode:
 *   `.Lerror_entry_from_usermode_after_swapgs` — pop the return address, `call sync_regs`,
 *   switch to the stack it returns, push the return address, ret; from kernel mode
 *   (`.Lerror_kernelspace`): compare the faulting RIP with native_irq_return_iret, `je
 *   .Lerror_bad_iret`, else ret (`.Lerror_entry_done`; the B-step truncated-RIP and
 *   `.Lgs_change` checks are not modeled); `.Lerror_bad_iret`: `mov %rsp, %rdi; call
 *   fixup_bad_iret; mov %rax, %rsp; jmp .Lerror_entry_from_usermode_after_swapgs`.
 * SWAPGS, the CR3 switch and the LFENCEs are not modeled (the machine has no GS base).
 * Installs the #GP gate (interrupt gate, DPL 0, no IST, as idt.c's INTG). Returns the end
 * address.
 */
export function assembleGeneralProtection64(k: Kernel, at: bigint, o: GeneralProtection64Options = {}): bigint {
  const gp = k.host("do_general_protection", (call: HostCall) => doGeneralProtection(k, k.regsArg(call)));
  const sync = k.host("sync_regs", (call: HostCall) => syncRegs(k, call));
  const fixup = k.host("fixup_bad_iret", (call: HostCall) => fixupBadIret(k, call));
  const iret = k.addr("native_irq_return_iret");
  const a = new Assembler(64);
  const entry = a.label("general_protection");
  const errorEntry = a.label("error_entry");
  const fromUser = a.label(".Lerror_entry_from_usermode_after_swapgs");
  const done = a.label(".Lerror_entry_done");
  const kernelspace = a.label(".Lerror_kernelspace");
  const badIret = a.label(".Lerror_bad_iret");

  a.bind(entry);
  a.branch(Code.Call_rel32_64, errorEntry);
  a.ins(Code.Mov_rm64_r64, reg(R.RDI), reg(R.RSP));                              // pt_regs pointer
  a.ins(Code.Mov_r64_rm64, reg(R.RSI), mem(R.RSP, PT_REGS_64.orig_ax));           // the error code
  a.ins(Code.Mov_rm64_imm32, mem(R.RSP, PT_REGS_64.orig_ax), -1);                 // no syscall to restart
  a.branch(Code.Call_rel32_64, gp);
  for (const r of POP_ORDER) a.ins(Code.Pop_r64, reg(r));                         // error_exit: POP_REGS
  a.ins(Code.Add_rm64_imm8, reg(R.RSP), 8);                                       // skip orig_ax
  a.branch(Code.Jmp_rel32_64, iret);                                              // INTERRUPT_RETURN

  a.bind(errorEntry);
  a.ins(Code.Push_r64, reg(R.RSI));                                               // pt_regs->si
  a.ins(Code.Mov_r64_rm64, reg(R.RSI), mem(R.RSP, 8));                            // the return address
  a.ins(Code.Mov_rm64_r64, mem(R.RSP, 8), reg(R.RDI));                            // pt_regs->di over it
  for (const r of PUSH_AFTER_SI) a.ins(Code.Push_r64, reg(r));
  a.ins(Code.Push_r64, reg(R.RSI));                                               // return address below pt_regs
  a.ins(Code.Test_rm8_imm8, mem(R.RSP, PT_REGS_64.cs + 8), 3);                    // testb $3, CS+8(%rsp)
  a.branch(Code.Je_rel32_64, kernelspace);
  a.bind(fromUser);
  a.ins(Code.Pop_r64, reg(R.R12));                                                // save the return address
  a.ins(Code.Mov_rm64_r64, reg(R.RDI), reg(R.RSP));                               // arg0 = pt_regs
  a.branch(Code.Call_rel32_64, sync);
  a.ins(Code.Mov_rm64_r64, reg(R.RSP), reg(R.RAX));                               // switch stack
  a.ins(Code.Push_r64, reg(R.R12));
  a.ins(Code.Retnq);
  a.bind(done);
  a.ins(Code.Retnq);
  a.bind(kernelspace);
  a.ins(Code.Lea_r64_m, reg(R.RCX), mem(R.RIP, o.badIretRip ?? iret));            // leaq native_irq_return_iret(%rip), %rcx
  a.ins(Code.Cmp_rm64_r64, mem(R.RSP, PT_REGS_64.ip + 8), reg(R.RCX));            // cmpq %rcx, RIP+8(%rsp)
  a.branch(Code.Je_rel32_64, badIret);
  a.branch(Code.Jmp_rel32_64, done);
  a.bind(badIret);
  a.ins(Code.Mov_rm64_r64, reg(R.RDI), reg(R.RSP));                               // the bad_iret_stack
  a.branch(Code.Call_rel32_64, fixup);
  a.ins(Code.Mov_rm64_r64, reg(R.RSP), reg(R.RAX));
  a.branch(Code.Jmp_rel32_64, fromUser);

  const out = a.assemble(at);
  k.m.load(at, out.bytes);
  for (const l of [entry, errorEntry, fromUser, done, kernelspace, badIret]) k.sym.set(l.name, out.addressOf(l));
  k.m.setGate(X86_TRAP_GP, { handler: k.addr("general_protection"), dpl: 0, ist: 0, type: "interrupt" });
  return out.end;
}
