import { Code, Register as R } from "iced-x86";
import { Assembler, type Label, mem, reg } from "../asm/index.js";
import { assembleFtraceRegsCaller } from "./ftrace-caller.js";
import type { Kernel } from "./kernel.js";

/** pt_regs push order of PUSH_AND_CLEAR_REGS (entry/calling.h): di first, r15 last. */
const SAVE_ORDER = [R.RDI, R.RSI, R.RDX, R.RCX, R.RAX, R.R8, R.R9, R.R10, R.R11, R.RBX, R.RBP, R.R12, R.R13, R.R14, R.R15];

export interface Entry64Options {
  /** Words copied by the `.rept N; pushq 5*8(%rsp)` gap (6 in Linux; 0 = no gap). */
  readonly gapWords: number;
  /** C handler the stub calls with (regs, error_code). */
  readonly handler: bigint;
  /** Mutant: after restoring, skip the copy and IRETQ through the original hardware frame. */
  readonly exitFromOriginal?: boolean;
  /**
   * The exit's IRETQ: absent, the stub ends in its own `iretq`, named `native_irq_return_iret`
   * (entry_64.S v5.3: every return, to user or kernel mode, ends in INTERRUPT_RETURN → `jmp
   * native_iret` → that IRETQ); given, the stub ends in `jmp` to it (a second entry stub of the
   * same kernel shares the one exit).
   */
  readonly iretAt?: bigint;
}

/**
 * The x86-64 int3 entry and exit (entry/entry_64.S v5.2, `idtentry int3 do_int3
 * has_error_code=0 create_gap=1`): push orig_ax = -1; for kernel-mode traps copy the
 * orig_ax + hardware frame `gapWords` words down (`testb $3, CS-ORIG_RAX(%rsp); jnz 1f;
 * .rept 6; pushq 5*8(%rsp); .endr`), save registers into pt_regs, call the handler, restore
 * and IRETQ from the copy. The IRETQ is `native_irq_return_iret` (see Entry64Options.iretAt):
 * user-mode and kernel-mode int3s return through it. Returns the end address.
 */
export function assembleInt3Entry64(k: Kernel, at: bigint, o: Entry64Options): bigint {
  const a = new Assembler(64);
  const noGap = a.label("from_usermode_no_gap");
  a.ins(Code.Pushq_imm8, -1);
  if (o.gapWords > 0) {
    a.ins(Code.Test_rm8_imm8, mem(R.RSP, 16), 3);   // testb $3, CS-ORIG_RAX(%rsp)
    a.branch(Code.Jne_rel8_64, noGap);
    for (let i = 0; i < o.gapWords; i++) a.ins(Code.Push_rm64, mem(R.RSP, 5 * 8)); // pushq 5*8(%rsp)
  }
  a.bind(noGap);
  for (const r of SAVE_ORDER) a.ins(Code.Push_r64, reg(r));
  a.ins(Code.Mov_rm64_r64, reg(R.RDI), reg(R.RSP));  // regs
  a.ins(Code.Xor_rm32_r32, reg(R.ESI), reg(R.ESI));  // error_code = 0
  a.branch(Code.Call_rel32_64, o.handler);
  for (const r of [...SAVE_ORDER].reverse()) a.ins(Code.Pop_r64, reg(r));
  a.ins(Code.Add_rm64_imm8, reg(R.RSP), 8);          // skip orig_ax
  if (o.exitFromOriginal && o.gapWords > 0) a.ins(Code.Add_rm64_imm8, reg(R.RSP), 8 * o.gapWords);
  let iret: Label | undefined;
  if (o.iretAt !== undefined) a.branch(Code.Jmp_rel32_64, o.iretAt);
  else a.bind(iret = a.label("native_irq_return_iret")).ins(Code.Iretq);
  const out = a.assemble(at);
  k.m.load(at, out.bytes);
  k.sym.set("asm_int3", at);
  if (iret !== undefined) k.sym.set(iret.name, out.addressOf(iret));
  return at + BigInt(out.bytes.length);
}

/** ftrace_regs_caller (trace/ftrace_64.S), reduced: see assembleFtraceRegsCaller in ftrace-caller.ts. */
export function assembleFtraceRegsCaller64(k: Kernel, at: bigint, tracer: bigint): bigint {
  return assembleFtraceRegsCaller(k, at, tracer, 64);
}

/**
 * A thunk for the §7.10 mutant: trashes the caller-saved registers (except rax/rdi, which
 * the callee reads) and jumps on to the address in r11.
 */
export function assembleClobberThunk64(k: Kernel, at: bigint): bigint {
  const a = new Assembler(64);
  for (const r of [R.RCX, R.RDX, R.RSI, R.R8, R.R9, R.R10]) a.ins(Code.Mov_r64_imm64, reg(r), 0xbadbadbadn);
  a.ins(Code.Jmp_rm64, reg(R.R11));
  const out = a.assemble(at);
  k.m.load(at, out.bytes);
  k.sym.set("clobber_thunk", at);
  return at + BigInt(out.bytes.length);
}
