import { Code, Register as R } from "iced-x86";
import { Assembler, type Label, mem, reg } from "../asm/index.js";
import { addExtable, type ExitOptions, type ExtableItems, fixupFrame, GPRS, nameExtableLabels, returnPaths, saveAll } from "./entry-32-macros.js";
import { assembleFtraceRegsCaller } from "./ftrace-caller.js";
import type { Kernel } from "./kernel.js";

export { CS_FROM_KERNEL } from "./entry-32-macros.js";

/**
 * The pre-v5.3 designs' stubs keep their segment slots (gs, fs, es, ds) as 0 and leave the
 * segment registers alone (their properties never change a segment); everything else is
 * the real sequence. The v5.3 stub saves and restores them for real (entry-32-macros.ts).
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
  k.sym.set("ret_from_exception", out.addressOf(x.restoreAll)); // one return path for user and kernel mode
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

export interface Entry32V53Options extends Entry32Options, ExitOptions {
  /** §7.15 mutant (81ff2c37f9e5): the from-kernel test misclassifies kernel frames as user — never fix up. */
  readonly neverFixup?: boolean;
  /**
   * Mutant (before a1a338e5b6fe "x86/entry/32: Unwind the ESPFIX stack earlier on exception
   * entry", v5.3/v5.4 as released): common_exception unwinds the ESPFIX stack after SAVE_ALL,
   * so FIXUP_FRAME fills regs->ss/sp with the ESPFIX segment and its offset ESP.
   */
  readonly espfixUnwoundLate?: boolean;
}

/** The options each kernel's v5.3-style stub was assembled with (its exception path uses the same macros). */
const v53Stubs = new WeakMap<Kernel, Entry32V53Options>();

/** The options of `k`'s v5.3-style int3 stub, or undefined when its stub is an older design. */
export function v53StubOptions(k: Kernel): Entry32V53Options | undefined {
  return v53Stubs.get(k);
}

/**
 * int3 entry, i386 v5.3 with the Nov 2019 x86/urgent fixes (in 5.3.14/5.4.1 and v5.5):
 * 82cb8a0b1d8d (FIXUP_FRAME after pushing %fs), 40ad2199580e (IRET_FRAME at the end of
 * RESTORE_REGS, so `.Lirq_return` labels the IRET), 4c4fd55d3d59 (IRET_FRAME's stores through
 * %ss), a1a338e5b6fe and 4a13b0e3e109 (the exception path unwinds ESPFIX before FIXUP_FRAME,
 * finding the base with SGDT). `int3: pushl $-1; SAVE_ALL; movl %esp,%eax; call do_int3;
 * jmp ret_from_exception` — SAVE_ALL saves and reloads the segment registers and completes
 * a kernel-mode frame (FIXUP_FRAME: CS_FROM_KERNEL, ss and sp = the interrupted ESP R pushed
 * below the original six words, which become a 24-byte gap); the return paths
 * (entry-32-macros.ts returnPaths) restore them and, for a CS_FROM_KERNEL frame, IRET_FRAME
 * rebuilds the IRET frame just below the (possibly modified) regs->sp. Returns to user mode
 * with an LDT stack segment go through the ESPFIX stack.
 */
export function assembleInt3Entry32V53(k: Kernel, at: bigint, o: Entry32V53Options): bigint {
  const a = new Assembler(32);
  const ex: ExtableItems = [];
  const int3 = a.label("int3");
  a.bind(int3);
  a.ins(Code.Pushd_imm8, -1);                                          // orig_eax
  saveAll(a, { fixupFrame: (b) => fixupFrame(b, o.neverFixup === true) });
  a.ins(Code.Xor_rm32_r32, reg(R.EDX), reg(R.EDX));                    // zero error code
  a.ins(Code.Mov_rm32_r32, reg(R.EAX), reg(R.ESP));                    // pt_regs pointer
  a.branch(Code.Call_rel32_32, o.handler);
  const p = returnPaths(a, o, ex);
  const out = a.assemble(at);
  k.m.load(at, out.bytes);
  k.sym.set("int3", at);
  for (const l of [p.retFromException, p.restoreAll, p.restoreAllKernel, p.irqReturn]) k.sym.set(l.name, out.addressOf(l));
  addExtable(k, out, ex);
  nameExtableLabels(k, out, ex);
  v53Stubs.set(k, o);
  return at + BigInt(out.bytes.length);
}

/** ftrace_regs_caller (trace/ftrace_32.S), reduced: see assembleFtraceRegsCaller in ftrace-caller.ts. */
export function assembleFtraceRegsCaller32(k: Kernel, at: bigint, tracer: bigint): bigint {
  return assembleFtraceRegsCaller(k, at, tracer, 32);
}
