import { Code, Register as R } from "iced-x86";
import { Assembler, type Label, mem, reg } from "../asm/index.js";
import { assembleFtraceRegsCaller } from "./ftrace-caller.js";
import type { Kernel } from "./kernel.js";

/** SAVE_ALL's general registers in push order (entry_32.S): pt_regs->ax … ->bx. */
const GPRS = [R.EAX, R.EBP, R.EDI, R.ESI, R.EDX, R.ECX, R.EBX];
/** CS_FROM_KERNEL: a software flag in the high bits of the saved CS dword (entry_32.S v5.3). */
export const CS_FROM_KERNEL = 1 << 29;

/**
 * Segment registers are not modeled: their pt_regs slots (gs, fs, es, ds) are pushed as 0
 * and skipped on exit. Everything else is the real sequence.
 */
function pushSegs(a: Assembler, n: number): void {
  for (let i = 0; i < n; i++) a.ins(Code.Pushd_imm8, 0);
}

function saveGprs(a: Assembler): void {
  for (const r of GPRS) a.ins(Code.Push_r32, reg(r));
}

function restoreGprs(a: Assembler): void {
  for (const r of [...GPRS].reverse()) a.ins(Code.Pop_r32, reg(r));
}

/** The exit labels every i386 stub binds: where a return path restores pt_regs, and `.Lirq_return`. */
interface ExitLabels {
  /** restore_all: pop the registers, skip ds…orig_eax, (v5.3+) IRET_FRAME, IRET. */
  readonly restoreAll: Label;
  /** .Lirq_return: the address _ASM_EXTABLE(.Lirq_return, iret_exc) names (entry_32.S). */
  readonly irqReturn: Label;
}

function exitLabels(a: Assembler): ExitLabels {
  return { restoreAll: a.label("restore_all"), irqReturn: a.label(".Lirq_return") };
}

function finish(k: Kernel, a: Assembler, at: bigint, x: ExitLabels): bigint {
  const out = a.assemble(at);
  k.m.load(at, out.bytes);
  k.sym.set("int3", at);
  k.sym.set("restore_all", out.addressOf(x.restoreAll));
  k.sym.set(".Lirq_return", out.addressOf(x.irqReturn));
  return at + BigInt(out.bytes.length);
}

export interface Entry32Options {
  readonly handler: bigint;
}

export interface Entry32MoveOptions extends Entry32Options {
  /** `subl $8, %esp` before the call (§7.6 mutant drops it). */
  readonly reserve: boolean;
}

/**
 * The SAVE_ALL-style int3 entry all pre-v5.3 i386 designs share: `pushl $-1`, an optional
 * RFC gap copy, the segment slots and SAVE_ALL's registers, `call handler(regs)`, then
 * restore and IRET. `move` is the 2019-05-04 design's reservation and switch to the
 * returned regs; `rfcCopy` the 2019-05-01 RFC's 64-bit-style copy.
 */
function assembleSaveAllEntry(k: Kernel, at: bigint, handler: bigint, o: { rfcCopy?: boolean; move?: { reserve: boolean } }): bigint {
  const a = new Assembler(32);
  const x = exitLabels(a);
  a.ins(Code.Pushd_imm8, -1);
  if (o.rfcCopy) {
    const noGap = a.label("from_usermode_no_gap");
    a.ins(Code.Test_rm8_imm8, mem(R.ESP, 8), 3);     // CS RPL
    a.branch(Code.Jne_rel8_32, noGap);
    for (let i = 0; i < 6; i++) a.ins(Code.Push_rm32, mem(R.ESP, 5 * 4));
    a.bind(noGap);
  }
  pushSegs(a, 4);
  saveGprs(a);
  a.ins(Code.Mov_rm32_r32, reg(R.EAX), reg(R.ESP));
  if (o.move === undefined) a.ins(Code.Xor_rm32_r32, reg(R.EDX), reg(R.EDX));
  else if (o.move.reserve) a.ins(Code.Sub_rm32_imm8, reg(R.ESP), 8);
  a.branch(Code.Call_rel32_32, handler);
  if (o.move !== undefined) a.ins(Code.Mov_rm32_r32, reg(R.ESP), reg(R.EAX));
  a.bind(x.restoreAll);
  restoreGprs(a);
  a.ins(Code.Add_rm32_imm8, reg(R.ESP), 5 * 4);   // ds, es, fs, gs, orig_eax
  a.bind(x.irqReturn);
  a.ins(Code.Iretd);
  return finish(k, a, at, x);
}

/**
 * int3 entry, i386 v5.2 (entry_32.S: `pushl $-1; SAVE_ALL; movl %esp,%eax; call do_int3;
 * jmp ret_from_exception`): a kernel-mode frame has no sp/ss, so pt_regs->sp/ss are the top
 * two words of the interrupted stack. No gap, no call emulation.
 */
export function assembleInt3Entry32V52(k: Kernel, at: bigint, o: Entry32Options): bigint {
  return assembleSaveAllEntry(k, at, o.handler, {});
}

/**
 * int3 entry, i386, Linus's 2019-05-04 design: do_kernel_int3() returns the pt_regs to
 * use, which int3_emulate_push() may have moved down one word; the stub reserves room
 * below pt_regs for that move (`subl $8, %esp`) and switches to the returned regs
 * (`movl %eax, %esp`) before restoring.
 */
export function assembleInt3Entry32Move(k: Kernel, at: bigint, o: Entry32MoveOptions): bigint {
  return assembleSaveAllEntry(k, at, o.handler, { move: { reserve: o.reserve } });
}

/**
 * int3 entry, i386, the 2019-05-01 RFC (§7.3): the 64-bit recipe applied to the 32-bit
 * frame — for kernel-mode traps `.rept 6; pushl 5*4(%esp)` — which copies two words of
 * the interrupted stack into the "sp"/"ss" slots.
 */
export function assembleInt3Entry32Rfc(k: Kernel, at: bigint, o: Entry32Options): bigint {
  return assembleSaveAllEntry(k, at, o.handler, { rfcCopy: true });
}

export interface Entry32V53Options extends Entry32Options {
  /** §7.8 mutant: when regs->sp is unchanged, return through the original hardware frame. */
  readonly iretFrameFastPath?: boolean;
  /** §7.15 mutant: classify "from kernel" by RPL != 0 … here: never fix up (treat as user). */
  readonly neverFixup?: boolean;
  /**
   * §7.15 mutant (3c88c692c287 as released in v5.3/v5.4): `.Lirq_return` labels the start of
   * IRET_FRAME instead of the IRET, so the exception-table entry no longer covers the IRET.
   */
  readonly irqReturnBeforeIretFrame?: boolean;
}

/**
 * int3 entry, i386 v5.3 with the Nov 2019 x86/urgent fixes (in 5.3.14, 5.4.1 and v5.5):
 * 82cb8a0b1d8d (FIXUP_FRAME after pushing %fs) and 40ad2199580e (IRET_FRAME at the end of
 * RESTORE_REGS, so `.Lirq_return` labels the IRET again). A kernel-mode
 * frame is completed — the CS dword's high bits cleared and CS_FROM_KERNEL set, then
 * ss, sp (= the interrupted ESP R), flags, cs, ip, orig_eax, gs, fs pushed again below the
 * original six words, which become a 24-byte gap. On exit IRET_FRAME rebuilds the 3-word
 * IRET frame just below the (possibly modified) regs->sp, without lowering ESP first.
 */
export function assembleInt3Entry32V53(k: Kernel, at: bigint, o: Entry32V53Options): bigint {
  const a = new Assembler(32);
  const noFixup = a.label("from_usermode_no_fixup");
  const finished = a.label("finished_frame");
  const fast = a.label("fast_path");
  const x = exitLabels(a);
  a.ins(Code.Pushd_imm8, -1);                           // orig_eax
  pushSegs(a, 2);                                      // gs, fs
  // FIXUP_FRAME: the stack is fs@0, gs@4, orig_eax@8, ip@12, cs@16, flags@20, <previous>@24
  a.ins(Code.And_rm32_imm32, mem(R.ESP, 16), 0x0000ffff);
  if (o.neverFixup) a.branch(Code.Jmp_rel8_32, noFixup);
  a.ins(Code.Test_rm32_imm32, mem(R.ESP, 16), 3);      // USER_SEGMENT_RPL_MASK: RPL 3 is user
  a.branch(Code.Jne_rel8_32, noFixup);
  a.ins(Code.Or_rm32_imm32, mem(R.ESP, 16), CS_FROM_KERNEL);
  a.ins(Code.Pushd_imm32, k.L.kernelSs);                // ss (%ss = __KERNEL_DS)
  a.ins(Code.Push_r32, reg(R.ESP));                     // sp: the old ESP …
  a.ins(Code.Add_rm32_imm8, mem(R.ESP), 7 * 4);         // … moved back to the previous context
  for (let i = 0; i < 6; i++) a.ins(Code.Push_rm32, mem(R.ESP, 7 * 4)); // flags, cs, ip, orig_eax, gs, fs
  a.bind(noFixup);
  pushSegs(a, 2);                                      // es, ds
  saveGprs(a);
  a.ins(Code.Mov_rm32_r32, reg(R.EAX), reg(R.ESP));
  a.ins(Code.Xor_rm32_r32, reg(R.EDX), reg(R.EDX));
  a.branch(Code.Call_rel32_32, o.handler);
  a.bind(x.restoreAll);
  restoreGprs(a);
  a.ins(Code.Add_rm32_imm8, reg(R.ESP), 5 * 4);         // ds, es, fs, gs, orig_eax: ESP at ip
  if (o.irqReturnBeforeIretFrame === true) a.bind(x.irqReturn);
  // IRET_FRAME: the stack is ip@0, cs@4, flags@8, sp@12, ss@16
  // (since 40ad2199580e it ends RESTORE_REGS, so `.Lirq_return` labels the IRET itself)
  a.ins(Code.Test_rm32_imm32, mem(R.ESP, 4), CS_FROM_KERNEL);
  a.branch(Code.Je_rel8_32, finished);
  a.ins(Code.Push_r32, reg(R.EAX));
  a.ins(Code.Push_r32, reg(R.ECX));
  a.ins(Code.Mov_r32_rm32, reg(R.EAX), mem(R.ESP, 5 * 4));   // the (modified) regs->sp
  if (o.iretFrameFastPath) {
    // RFC fast path: sp unchanged (== the slot above ss + the 24-byte gap) → reuse the original frame
    a.ins(Code.Lea_r32_m, reg(R.ECX), mem(R.ESP, 7 * 4 + 24));
    a.ins(Code.Cmp_rm32_r32, reg(R.EAX), reg(R.ECX));
    a.branch(Code.Je_rel8_32, fast);
  }
  a.ins(Code.Mov_r32_rm32, reg(R.ECX), mem(R.ESP, 4 * 4));   // flags
  a.ins(Code.Mov_rm32_r32, mem(R.EAX, -4), reg(R.ECX));
  a.ins(Code.Mov_r32_rm32, reg(R.ECX), mem(R.ESP, 3 * 4));   // cs
  a.ins(Code.And_rm32_imm32, reg(R.ECX), 0x0000ffff);
  a.ins(Code.Mov_rm32_r32, mem(R.EAX, -8), reg(R.ECX));
  a.ins(Code.Mov_r32_rm32, reg(R.ECX), mem(R.ESP, 2 * 4));   // ip
  a.ins(Code.Mov_rm32_r32, mem(R.EAX, -12), reg(R.ECX));
  a.ins(Code.Mov_r32_rm32, reg(R.ECX), mem(R.ESP, 1 * 4));   // eax
  a.ins(Code.Mov_rm32_r32, mem(R.EAX, -16), reg(R.ECX));
  a.ins(Code.Pop_r32, reg(R.ECX));
  a.ins(Code.Lea_r32_m, reg(R.ESP), mem(R.EAX, -16));
  a.ins(Code.Pop_r32, reg(R.EAX));
  a.bind(finished);
  if (o.irqReturnBeforeIretFrame !== true) a.bind(x.irqReturn);
  a.ins(Code.Iretd);
  if (o.iretFrameFastPath) {
    a.bind(fast);
    a.ins(Code.Pop_r32, reg(R.ECX));
    a.ins(Code.Xchg_rm32_r32, mem(R.ESP), reg(R.EAX));         // eax restored; R on the stack
    a.ins(Code.Pop_r32, reg(R.ESP));                           // ESP = R
    a.ins(Code.Sub_rm32_imm8, reg(R.ESP), 12);                 // the original hardware frame, stale ip/flags
    a.ins(Code.Iretd);
  }
  return finish(k, a, at, x);
}

/** ftrace_regs_caller (trace/ftrace_32.S), reduced: see assembleFtraceRegsCaller in ftrace-caller.ts. */
export function assembleFtraceRegsCaller32(k: Kernel, at: bigint, tracer: bigint): bigint {
  return assembleFtraceRegsCaller(k, at, tracer, 32);
}
