import { Code, Register as R } from "iced-x86";
import { type Assembled, type Assembler, type Label, type Mem, mem, reg } from "../asm/index.js";
import { SEL32 } from "../machine/tables.js";
import { asmExtable } from "./extable.js";
import { GDT_ENTRY_32, GDT_PAGE } from "./gdt-32.js";
import type { Kernel } from "./kernel.js";
import { PT_REGS_32 } from "./pt-regs.js";

/**
 * The i386 entry/exit macros of arch/x86/entry/entry_32.S as of v5.3 with its Nov 2019
 * x86/urgent fixes (the shape v5.5 released), emitted into an Assembler: SAVE_ALL,
 * FIXUP_FRAME, RESTORE_REGS with IRET_FRAME and its exception-table fix-ups,
 * CHECK_AND_APPLY_ESPFIX, UNWIND_ESPFIX_STACK / FIXUP_ESPFIX_STACK, and the return paths
 * ret_from_exception → restore_all / restore_all_kernel. CONFIG_X86_32_LAZY_GS (GS is
 * pushed as 0 and skipped), no VM86, no PTI (no entry stack, no CR3 switch), no tracing.
 */

/** CS_FROM_KERNEL: a software flag in the high bits of the saved CS dword (entry_32.S v5.3). */
export const CS_FROM_KERNEL = 1 << 29;
/** SAVE_ALL's general registers in push order: pt_regs->ax … ->bx. */
export const GPRS = [R.EAX, R.EBP, R.EDI, R.ESI, R.EDX, R.ECX, R.EBX];
const X86_EFLAGS_VM = 0x20000, SEGMENT_TI_MASK = 4, SEGMENT_LDT = 4, USER_RPL = 3;

/** What a stub's exit macros vary by (each a mutant's reverted fix). */
export interface ExitOptions {
  /** §7.8 mutant: when regs->sp is unchanged, IRET through the original hardware frame. */
  readonly iretFrameFastPath?: boolean;
  /**
   * §7.15 mutant (3c88c692c287 as released in v5.3/v5.4): IRET_FRAME sits at `.Lirq_return`
   * instead of ending RESTORE_REGS, so the exception table names it, not the IRET.
   */
  readonly irqReturnBeforeIretFrame?: boolean;
  /**
   * §7.15 mutant (before 4c4fd55d3d59 "x86/entry/32: Use %ss segment where required"):
   * IRET_FRAME's four stores below regs->sp go through DS — which holds the interrupted
   * frame's DS by then — instead of SS.
   */
  readonly iretFrameDs?: boolean;
}

/** Exception-table entries a macro adds: [faulting instruction, fix-up], resolved after assembly. */
export type ExtableItems = [Label, Label][];

/** Registers the collected exception-table entries once the block is assembled. */
export function addExtable(k: Kernel, out: Assembled, items: ExtableItems): void {
  for (const [insn, fixup] of items) asmExtable(k, out.addressOf(insn), out.addressOf(fixup));
}

const fsVar = (off: bigint | number): Mem => ({ base: R.None, disp: GDT_PAGE + BigInt(off), seg: R.FS });

/**
 * SAVE_ALL (v5.3 + 82cb8a0b1d8d + a1a338e5b6fe): cld; PUSH_GS (lazy: 0) unless `skipGs`;
 * pushl %fs; %fs := __KERNEL_PERCPU (with EAX saved around it, and UNWIND_ESPFIX_STACK there
 * when `unwindEspfix`); FIXUP_FRAME when `fixupFrame`; pushl %es, %ds, the general registers;
 * %ds = %es := __USER_DS.
 */
export function saveAll(a: Assembler, o: { skipGs?: boolean; unwindEspfix?: boolean; fixupFrame?: (a: Assembler) => void }): void {
  a.ins(Code.Cld);
  if (o.skipGs !== true) a.ins(Code.Pushd_imm8, 0);
  a.ins(Code.Pushd_FS, reg(R.FS));
  a.ins(Code.Push_r32, reg(R.EAX));
  a.ins(Code.Mov_r32_imm32, reg(R.EAX), SEL32.KERNEL_PERCPU);
  a.ins(Code.Mov_Sreg_r32m16, reg(R.FS), reg(R.EAX));
  if (o.unwindEspfix === true) unwindEspfixStack(a);
  a.ins(Code.Pop_r32, reg(R.EAX));
  o.fixupFrame?.(a);
  a.ins(Code.Pushd_ES, reg(R.ES));
  a.ins(Code.Pushd_DS, reg(R.DS));
  for (const r of GPRS) a.ins(Code.Push_r32, reg(r));
  a.ins(Code.Mov_r32_imm32, reg(R.EDX), SEL32.USER_DS);
  a.ins(Code.Mov_Sreg_r32m16, reg(R.DS), reg(R.EDX));
  a.ins(Code.Mov_Sreg_r32m16, reg(R.ES), reg(R.EDX));
}

/**
 * FIXUP_FRAME (v5.3 + 82cb8a0b1d8d + 81ff2c37f9e5), with fs@0, gs@4, orig_eax@8, ip@12,
 * cs@16, flags@20 on the stack: clear the CS dword's high bits; for a kernel-mode frame
 * (USER_SEGMENT_RPL_MASK clear) set CS_FROM_KERNEL and push ss, sp (= the interrupted ESP),
 * flags, cs, ip, orig_eax, gs, fs again below the original six words, which become a gap.
 * `neverFixup` (§7.15 mutant, 81ff2c37f9e5): the kernel's own frames are taken for user ones.
 * Every access is %esp-relative, so it goes through SS — right even on the ESPFIX stack
 * ("Be careful: we may have nonzero SS base due to ESPFIX", 4c4fd55d3d59).
 */
export function fixupFrame(a: Assembler, neverFixup = false): void {
  const noFixup = a.label("from_usermode_no_fixup");
  a.ins(Code.And_rm32_imm32, mem(R.ESP, 16), 0x0000ffff);
  if (neverFixup) a.branch(Code.Jmp_rel8_32, noFixup);
  a.ins(Code.Test_rm32_imm32, mem(R.ESP, 16), 2);             // USER_SEGMENT_RPL_MASK
  a.branch(Code.Jne_rel8_32, noFixup);
  a.ins(Code.Or_rm32_imm32, mem(R.ESP, 16), CS_FROM_KERNEL);
  a.ins(Code.Pushd_SS, reg(R.SS));                             // ss
  a.ins(Code.Push_r32, reg(R.ESP));                            // sp (points at ss) …
  a.ins(Code.Add_rm32_imm8, mem(R.ESP), 7 * 4);                // … back at the previous context
  for (let i = 0; i < 6; i++) a.ins(Code.Push_rm32, mem(R.ESP, 7 * 4)); // flags, cs, ip, orig_eax, gs, fs
  a.bind(noFixup);
}

/**
 * IRET_FRAME (3c88c692c287 + 4c4fd55d3d59), with ip@0, cs@4, flags@8, sp@12, ss@16: for a
 * CS_FROM_KERNEL frame, rebuild the 3-word IRET frame (and EAX) right below the (modified)
 * regs->sp without lowering ESP first, then switch ESP to it. It runs with %ds, %es, %fs
 * from the interrupted frame and possibly on the ESPFIX stack (nonzero SS base, offset
 * ESP), so the stores through EAX name %ss; the mutant's go through DS.
 */
export function iretFrame(a: Assembler, o: ExitOptions): { fastPath?: Label } {
  const finished = a.label("finished_frame");
  const seg = o.iretFrameDs === true ? undefined : R.SS;
  const below = (disp: number): Mem => (seg === undefined ? mem(R.EAX, disp) : { base: R.EAX, disp, seg });
  a.ins(Code.Test_rm32_imm32, mem(R.ESP, 4), CS_FROM_KERNEL);
  a.branch(Code.Je_rel8_32, finished);
  a.ins(Code.Push_r32, reg(R.EAX));
  a.ins(Code.Push_r32, reg(R.ECX));
  a.ins(Code.Mov_r32_rm32, reg(R.EAX), mem(R.ESP, 5 * 4));     // the (modified) regs->sp
  let fast: Label | undefined;
  if (o.iretFrameFastPath === true) {
    // RFC fast path: sp unchanged (== the slot above ss + the 24-byte gap) → reuse the original frame
    fast = a.label("fast_path");
    a.ins(Code.Lea_r32_m, reg(R.ECX), mem(R.ESP, 7 * 4 + 24));
    a.ins(Code.Cmp_rm32_r32, reg(R.EAX), reg(R.ECX));
    a.branch(Code.Je_rel8_32, fast);
  }
  a.ins(Code.Mov_r32_rm32, reg(R.ECX), mem(R.ESP, 4 * 4));     // flags
  a.ins(Code.Mov_rm32_r32, below(-1 * 4), reg(R.ECX));
  a.ins(Code.Mov_r32_rm32, reg(R.ECX), mem(R.ESP, 3 * 4));     // cs
  a.ins(Code.And_rm32_imm32, reg(R.ECX), 0x0000ffff);
  a.ins(Code.Mov_rm32_r32, below(-2 * 4), reg(R.ECX));
  a.ins(Code.Mov_r32_rm32, reg(R.ECX), mem(R.ESP, 2 * 4));     // ip
  a.ins(Code.Mov_rm32_r32, below(-3 * 4), reg(R.ECX));
  a.ins(Code.Mov_r32_rm32, reg(R.ECX), mem(R.ESP, 1 * 4));     // eax
  a.ins(Code.Mov_rm32_r32, below(-4 * 4), reg(R.ECX));
  a.ins(Code.Pop_r32, reg(R.ECX));
  a.ins(Code.Lea_r32_m, reg(R.ESP), mem(R.EAX, -4 * 4));
  a.ins(Code.Pop_r32, reg(R.EAX));
  a.bind(finished);
  return fast === undefined ? {} : { fastPath: fast };
}

/** The §7.8 fast path's tail: IRET through the original hardware frame (stale ip/flags). */
export function iretFrameFastPathTail(a: Assembler, fast: Label): void {
  a.bind(fast);
  a.ins(Code.Pop_r32, reg(R.ECX));
  a.ins(Code.Xchg_rm32_r32, mem(R.ESP), reg(R.EAX));          // eax restored; R on the stack
  a.ins(Code.Pop_r32, reg(R.ESP));                            // ESP = R
  a.ins(Code.Sub_rm32_imm8, reg(R.ESP), 12);                  // the original hardware frame
  a.ins(Code.Iretd);
}

/**
 * RESTORE_REGS pop (v5.3 + 40ad2199580e): pop the general registers, then %ds, %es, %fs —
 * each with an exception-table fix-up that retries with a null selector when the saved one
 * faults (`movl $0, (%esp); jmp 1b`) — skip gs (lazy) and `pop` more bytes, then IRET_FRAME
 * (unless the mutant keeps it at `.Lirq_return`). The fix-ups are emitted by `fixups`.
 */
export function restoreRegs(a: Assembler, pop: number, o: ExitOptions, ex: ExtableItems, fixups: (() => void)[], where = "RESTORE_REGS"): { fastPath?: Label } {
  for (const r of [...GPRS].reverse()) a.ins(Code.Pop_r32, reg(r));
  const pops: [Code, R][] = [[Code.Popd_DS, R.DS], [Code.Popd_ES, R.ES], [Code.Popd_FS, R.FS]];
  for (const [code, s] of pops) {
    const name = R[s].toLowerCase();
    const at = a.label(`${where}.pop_${name}`), fix = a.label(`${where}.fixup_${name}`);
    a.bind(at).ins(code, reg(s));
    ex.push([at, fix]);
    fixups.push(() => {
      a.bind(fix);
      a.ins(Code.Mov_rm32_imm32, mem(R.ESP), 0);
      a.branch(Code.Jmp_rel32_32, at);
    });
  }
  a.ins(Code.Add_rm32_imm8, reg(R.ESP), 4 + pop);             // POP_GS pop (lazy GS)
  return o.irqReturnBeforeIretFrame === true ? {} : iretFrame(a, o);
}

/**
 * CHECK_AND_APPLY_ESPFIX (v5.3): returning to user mode with an LDT stack segment, switch to
 * the ESPFIX stack — the same linear stack through __ESPFIX_SS, whose base the code writes
 * into this CPU's GDT (bits 16..23 and 24..31, through %fs:gdt_page) so that ESP's high word
 * can be the user's (IRET to a 16-bit SS restores only SP).
 */
export function checkAndApplyEspfix(a: Assembler): void {
  const end = a.label("espfix_end");
  a.ins(Code.Mov_r32_rm32, reg(R.EAX), mem(R.ESP, PT_REGS_32.flags));   // mix EFLAGS, SS and CS
  a.ins(Code.Mov_r8_rm8, reg(R.AH), mem(R.ESP, PT_REGS_32.ss));
  a.ins(Code.Mov_r8_rm8, reg(R.AL), mem(R.ESP, PT_REGS_32.cs));
  a.ins(Code.And_rm32_imm32, reg(R.EAX), X86_EFLAGS_VM | (SEGMENT_TI_MASK << 8) | 3);
  a.ins(Code.Cmp_rm32_imm32, reg(R.EAX), (SEGMENT_LDT << 8) | USER_RPL);
  a.branch(Code.Jne_rel8_32, end);                                      // not returning to user space with an LDT SS
  a.ins(Code.Mov_r32_rm32, reg(R.EDX), reg(R.ESP));                     // kernel esp
  a.ins(Code.Mov_r32_rm32, reg(R.EAX), mem(R.ESP, PT_REGS_32.sp));      // user esp
  a.ins(Code.Mov_r16_rm16, reg(R.AX), reg(R.DX));                       // eax: new kernel esp
  a.ins(Code.Sub_rm32_r32, reg(R.EDX), reg(R.EAX));                     // offset (low word is 0)
  a.ins(Code.Shr_rm32_imm8, reg(R.EDX), 16);
  a.ins(Code.Mov_rm8_r8, fsVar(GDT_ENTRY_32.ESPFIX_SS * 8 + 4), reg(R.DL)); // bits 16..23
  a.ins(Code.Mov_rm8_r8, fsVar(GDT_ENTRY_32.ESPFIX_SS * 8 + 7), reg(R.DH)); // bits 24..31
  a.ins(Code.Pushd_imm32, SEL32.ESPFIX_SS);
  a.ins(Code.Push_r32, reg(R.EAX));                                     // new kernel esp
  a.ins(Code.Cli);
  a.ins(Code.Lss_r32_m1632, reg(R.ESP), mem(R.ESP));                    // switch to the espfix segment
  a.bind(end);
}

/**
 * FIXUP_ESPFIX_STACK (v5.3 + 4a13b0e3e109): back from the ESPFIX stack to the zero-based
 * one at the same linear address. The base comes from the GDT, found with SGDT and read
 * through %cs (the only segment known to be flat here: DS may still be the user's).
 */
function fixupEspfixStack(a: Assembler): void {
  a.ins(Code.Push_r32, reg(R.ECX));
  a.ins(Code.Sub_rm32_imm8, reg(R.ESP), 2 * 4);
  a.ins(Code.Sgdt_m1632, mem(R.ESP));
  a.ins(Code.Mov_r32_rm32, reg(R.ECX), mem(R.ESP, 2));                  // GDT address
  a.ins(Code.Mov_r8_rm8, reg(R.AL), { base: R.ECX, disp: GDT_ENTRY_32.ESPFIX_SS * 8 + 4, seg: R.CS }); // bits 16..23
  a.ins(Code.Mov_r8_rm8, reg(R.AH), { base: R.ECX, disp: GDT_ENTRY_32.ESPFIX_SS * 8 + 7, seg: R.CS }); // bits 24..31
  a.ins(Code.Shl_rm32_imm8, reg(R.EAX), 16);
  a.ins(Code.Add_rm32_imm8, reg(R.ESP), 2 * 4);
  a.ins(Code.Pop_r32, reg(R.ECX));
  a.ins(Code.Add_r32_rm32, reg(R.EAX), reg(R.ESP));                     // the adjusted stack pointer
  a.ins(Code.Pushd_imm32, SEL32.KERNEL_DS);
  a.ins(Code.Push_r32, reg(R.EAX));
  a.ins(Code.Lss_r32_m1632, reg(R.ESP), mem(R.ESP));                    // switch to the normal stack segment
}

/** UNWIND_ESPFIX_STACK (v5.3): if SS is __ESPFIX_SS, FIXUP_ESPFIX_STACK (clobbers EAX only). */
export function unwindEspfixStack(a: Assembler): void {
  const no = a.label("no_espfix_fixup");
  a.ins(Code.Mov_r32m16_Sreg, reg(R.EAX), reg(R.SS));
  a.ins(Code.Cmp_rm16_imm16, reg(R.AX), SEL32.ESPFIX_SS);
  a.branch(Code.Jne_rel8_32, no);
  fixupEspfixStack(a);
  a.bind(no);
}

/** The labels the return paths bind (named as the kernel's symbols). */
export interface ReturnPaths {
  readonly retFromException: Label;
  readonly restoreAll: Label;
  readonly restoreAllKernel: Label;
  readonly irqReturn: Label;
}

/** Names every exception-table label (`restore_all.pop_es`, `restore_all.fixup_es`, …) as a symbol. */
export function nameExtableLabels(k: Kernel, out: Assembled, ex: ExtableItems): void {
  for (const pair of ex) for (const l of pair) k.sym.set(l.name, out.addressOf(l));
}

/**
 * ret_from_exception (non-VM86 form), restore_all and restore_all_kernel (v5.3 +
 * 40ad2199580e): to user mode → CHECK_AND_APPLY_ESPFIX, RESTORE_REGS 4 (with IRET_FRAME),
 * `.Lirq_return: iret`; to kernel mode → RESTORE_REGS 4, `jmp .Lirq_return`. The
 * exception-table entries it needs (the fix-ups of both RESTORE_REGS and
 * `_ASM_EXTABLE(.Lirq_return, iret_exc)` — iret_exc is the caller's) go to `ex`;
 * prepare_exit_to_usermode and preemption are not modeled.
 */
export function returnPaths(a: Assembler, o: ExitOptions, ex: ExtableItems): ReturnPaths {
  const p: ReturnPaths = {
    retFromException: a.label("ret_from_exception"), restoreAll: a.label("restore_all"),
    restoreAllKernel: a.label("restore_all_kernel"), irqReturn: a.label(".Lirq_return"),
  };
  const fixups: (() => void)[] = [];
  const fast: Label[] = [];
  a.bind(p.retFromException);
  a.ins(Code.Mov_r32_rm32, reg(R.EAX), mem(R.ESP, PT_REGS_32.cs));
  a.ins(Code.And_rm32_imm32, reg(R.EAX), 3);                            // SEGMENT_RPL_MASK
  a.ins(Code.Cmp_rm32_imm32, reg(R.EAX), USER_RPL);
  a.branch(Code.Jb_rel32_32, p.restoreAllKernel);                       // not returning to user space
  a.bind(p.restoreAll);
  checkAndApplyEspfix(a);
  const u = restoreRegs(a, 4, o, ex, fixups, "restore_all");
  if (u.fastPath !== undefined) fast.push(u.fastPath);
  a.bind(p.irqReturn);
  if (o.irqReturnBeforeIretFrame === true) {
    const f = iretFrame(a, o);
    if (f.fastPath !== undefined) fast.push(f.fastPath);
  }
  a.ins(Code.Iretd);
  a.bind(p.restoreAllKernel);
  const kf = restoreRegs(a, 4, o, ex, fixups, "restore_all_kernel");
  if (kf.fastPath !== undefined) fast.push(kf.fastPath);
  a.branch(Code.Jmp_rel32_32, p.irqReturn);
  for (const f of fixups) f();                                          // .fixup
  for (const f of fast) iretFrameFastPathTail(a, f);
  return p;
}
