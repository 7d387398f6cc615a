import { Code, Register as R } from "iced-x86";
import { Assembler, reg } from "../asm/index.js";

/** pt_regs push order (entry/calling.h SAVE_ALL / PUSH_AND_CLEAR_REGS): di first, r15 last. */
const SAVE_ORDER = [R.RDI, R.RSI, R.RDX, R.RCX, R.RAX, R.R8, R.R9, R.R10, R.R11, R.RBX, R.RBP, R.R12, R.R13, R.R14, R.R15];

export interface IdtEntryOptions {
  /** The C handler, called as handler(struct pt_regs *regs). */
  readonly handler: bigint;
  /** What goes in orig_ax: "rax" (a system call's number) or a constant (-1 for traps, ~vector for IRQs). */
  readonly origAx: "rax" | number;
  /** Enable interrupts around the C handler (do_int80_syscall_32's local_irq_enable). */
  readonly irqsOn: boolean;
}

/**
 * A reduced x86-64 IDT entry for the syscall model (entry/entry_64.S, entry_64_compat.S):
 * push orig_ax, save the registers into pt_regs, call the C handler with regs in rdi,
 * restore, drop orig_ax, IRETQ. Gates here are reached from ring 3 through TSS.RSP0, so no
 * int3 gap is needed (the gap is only for kernel-mode int3s). Appends to `a` at its end.
 */
export function emitIdtEntry(a: Assembler, o: IdtEntryOptions): void {
  if (o.origAx === "rax") a.ins(Code.Push_r64, reg(R.RAX));
  else a.ins(Code.Pushq_imm8, o.origAx);
  for (const r of SAVE_ORDER) a.ins(Code.Push_r64, reg(r));
  if (o.irqsOn) a.ins(Code.Sti);
  a.ins(Code.Mov_rm64_r64, reg(R.RDI), reg(R.RSP));
  a.branch(Code.Call_rel32_64, o.handler);
  if (o.irqsOn) a.ins(Code.Cli);
  for (const r of [...SAVE_ORDER].reverse()) a.ins(Code.Pop_r64, reg(r));
  a.ins(Code.Add_rm64_imm8, reg(R.RSP), 8);
  a.ins(Code.Iretq);
}
