import { pokeInt3HandlerEmulate, pokeInt3HandlerV52, type PokeFeatures } from "./alternative.js";
import {
  assembleFtraceRegsCaller32, assembleInt3Entry32Move, assembleInt3Entry32Rfc, assembleInt3Entry32V52,
  assembleInt3Entry32V53, type Entry32V53Options,
} from "./entry-32.js";
import { assembleIretFixup32 } from "./entry-32-exceptions.js";
import { ftraceInt3Handler32V52, ftraceLocation } from "./ftrace.js";
import { Kernel } from "./kernel.js";
import { PT_REGS_32, PtRegs } from "./pt-regs.js";
import { INT3_INSN_SIZE, int3EmulateCall, int3EmulateCallMove32 } from "./text-patching.js";
import { doInt3, type Int3Chain, installDieGates, installDoInt3, notifyDieInt3 } from "./traps.js";
import type { PatchKind, Variant } from "./variant.js";

/** Vectors that oops outright; #GP (13) goes through do_general_protection and the exception table. */
const DIE_VECTORS = [0, 6, 8, 10, 11, 12, 14];
/** Assembles an int3 entry stub at `at` that calls `handler`; returns the end address. */
export type Entry32 = (k: Kernel, at: bigint, handler: bigint) => bigint;

/**
 * Boots an i386 kernel from parts: the C handler (installed by `installHandler`, which
 * returns its address), the int3 entry stub (interrupt gate, DPL 3), ftrace_regs_caller,
 * the #GP path with the IRET fix-up (`_ASM_EXTABLE(.Lirq_return, iret_exc)`) when the stub
 * names `restore_all` and `.Lirq_return` (else #GP oopses, as before), and oops gates. The
 * building block for user variants too.
 */
export function buildKernel32(entry: Entry32, installHandler: (k: Kernel) => bigint): Kernel {
  const k = new Kernel(32);
  const handler = installHandler(k);
  const tracer = k.host("ftrace_ops_list_func", (call) => {
    k.events.push({ kind: "traced", ip: call.arg(0), parentIp: call.arg(1) });
  });
  const next = entry(k, k.L.text, handler);
  const afterCaller = assembleFtraceRegsCaller32(k, (next + 0x3fn) & ~0x3fn, tracer);
  const fixup = k.sym.has("restore_all") && k.sym.has(".Lirq_return");
  if (fixup) assembleIretFixup32(k, (afterCaller + 0x3fn) & ~0x3fn);
  k.m.setGate(3, { handler: k.addr("int3"), dpl: 3, type: "interrupt" });
  installDieGates(k, fixup ? DIE_VECTORS : [...DIE_VECTORS, 13]);
  return k;
}

interface MoveOptions {
  /** Bytes memmoved (offsetof(pt_regs, sp) = 60; §7.4 mutant: sizeof = 68). */
  readonly moveSize?: number;
  /** §7.5 mutant: the pt_regs returned by int3_emulate_call is thrown away. */
  readonly dropResult?: boolean;
}

/**
 * do_kernel_int3 — Linus's 2019-05-04 design (LKML, i386): the handlers get `struct pt_regs **`
 * and the function returns the pt_regs the exit path must use; ftrace_int3_handler stores
 * `*pregs = int3_emulate_call(regs, ftrace_regs_caller)`.
 */
function installDoKernelInt3Move(k: Kernel, o: MoveOptions): bigint {
  return k.host("do_kernel_int3", (call) => {
    const regs = k.regsArg(call);
    const ip = regs.ip - BigInt(INT3_INSN_SIZE);
    if (k.modifyingFtraceCode !== 0 && ftraceLocation(k, ip)) {
      const moved = int3EmulateCallMove32(regs, k.addr("ftrace_regs_caller"), o.moveSize ?? PT_REGS_32.sp);
      return o.dropResult ? regs.addr : moved.addr;
    }
    if (pokeInt3HandlerV52(k, regs) || notifyDieInt3(k, regs)) return regs.addr;
    doInt3(k, {}, regs);
    return regs.addr;
  });
}

const BASIC: readonly PatchKind[] = ["call", "jmp32", "jmp8", "nop2", "nop5"];
const POKE_V56: PokeFeatures = { ret: false, jcc: false };
const POKE_V510: PokeFeatures = { ret: true, jcc: false };
const POKE_V62: PokeFeatures = { ret: true, jcc: true };

const v53Entry = (o: Omit<Entry32V53Options, "handler"> = {}): Entry32 => (k, at, handler) => assembleInt3Entry32V53(k, at, { handler, ...o });
const pokeChain = (f: PokeFeatures): Int3Chain => ({ poke: (k, r) => pokeInt3HandlerEmulate(k, r, f) });
const v52Chain: Int3Chain = { ftrace: ftraceInt3Handler32V52, poke: pokeInt3HandlerV52 };
const selftestChain: Int3Chain = { poke: pokeInt3HandlerV52 };

/** The i386 kernel models. */
export const VARIANTS_32: readonly Variant[] = [
  {
    name: "x86_32/2019-05-04", bits: 32, frame: "idt", sites: "ftrace", emulates: ["call"],
    summary: "the seed's design: int3_emulate_call moves the truncated pt_regs down a word and returns it; the stub reserves 8 bytes and switches to the returned regs",
    boot: () => buildKernel32((k, at, h) => assembleInt3Entry32Move(k, at, { handler: h, reserve: true }), (k) => installDoKernelInt3Move(k, {})),
  },
  {
    name: "x86_32/v5.2", bits: 32, frame: "idt", sites: "ftrace", emulates: [],
    summary: "no call emulation on 32-bit: ftrace_int3_handler jumps over the site (livepatch unsupported)",
    boot: () => buildKernel32((k, at, h) => assembleInt3Entry32V52(k, at, { handler: h }), (k) => installDoInt3(k, v52Chain)),
  },
  {
    name: "x86_32/v5.3", bits: 32, frame: "idt", sites: "notifier", emulates: ["call"],
    summary: "v5.3 with its Nov 2019 x86/urgent fixes (82cb8a0b1d8d, 40ad2199580e, 4c4fd55d3d59, a1a338e5b6fe, 4a13b0e3e109; all in 5.4.1): SAVE_ALL saves and reloads the segment registers, FIXUP_FRAME completes kernel frames (24-byte gap), CS_FROM_KERNEL, IRET_FRAME rebuilt below regs->sp through %ss, `.Lirq_return` on the iret, ESPFIX on the return to an LDT stack and unwound before FIXUP_FRAME on exception entry; the int3 self-test emulates a call",
    boot: () => buildKernel32(v53Entry(), (k) => installDoInt3(k, selftestChain)),
  },
  {
    name: "x86_32/v5.6", bits: 32, frame: "idt", sites: "poke", emulates: BASIC,
    summary: "v5.3 frames and exit (FIXUP_FRAME, IRET_FRAME through %ss per 4c4fd55d3d59, ESPFIX); poke_int3_handler emulates CALL, JMP32, JMP8, NOP2/NOP5",
    boot: () => buildKernel32(v53Entry(), (k) => installDoInt3(k, pokeChain(POKE_V56))),
  },
  {
    name: "x86_32/v5.10", bits: 32, frame: "idt", sites: "poke", emulates: [...BASIC, "ret"],
    summary: "v5.6 plus RET emulation (same entry and exit: IRET_FRAME through %ss, 4c4fd55d3d59)",
    boot: () => buildKernel32(v53Entry(), (k) => installDoInt3(k, pokeChain(POKE_V510))),
  },
  {
    name: "x86_32/v6.2", bits: 32, frame: "idt", sites: "poke", emulates: [...BASIC, "ret", "jcc8", "jcc32"],
    summary: "v5.10 plus Jcc8/Jcc32 (same entry and exit: IRET_FRAME through %ss, 4c4fd55d3d59)",
    boot: () => buildKernel32(v53Entry(), (k) => installDoInt3(k, pokeChain(POKE_V62))),
  },
];

/** §7.7: the interrupted SP taken as &regs->sp (kernel_stack_pointer before v5.3) on a gapped frame. */
const spFromRegsAddress = (regs: PtRegs, target: bigint): void => {
  regs.sp = regs.at("sp");
  int3EmulateCall(regs, target);
};

/** i386 mutants. */
export const MUTANTS_32: readonly Variant[] = [
  {
    name: "x86_32/mutant/rfc-6-word-copy", bits: 32, frame: "idt", sites: "notifier", emulates: ["call"], mutantOf: "x86_32/v5.3",
    breaks: "§7.3: the 64-bit `.rept 6; pushl 5*4(%esp)` copy on a frame without sp/ss — the push goes through stack data",
    summary: "RFC 2019-05-01 entry_32",
    boot: () => buildKernel32((k, at, h) => assembleInt3Entry32Rfc(k, at, { handler: h }), (k) => installDoInt3(k, selftestChain)),
  },
  {
    name: "x86_32/mutant/memmove-sizeof-pt-regs", bits: 32, frame: "idt", sites: "ftrace", emulates: ["call"], mutantOf: "x86_32/2019-05-04",
    breaks: "§7.4: memmove sizeof(pt_regs) (68) instead of offsetof(pt_regs, sp) (60) shifts the interrupted stack's top words",
    summary: "wrong memmove size",
    boot: () => buildKernel32((k, at, h) => assembleInt3Entry32Move(k, at, { handler: h, reserve: true }), (k) => installDoKernelInt3Move(k, { moveSize: 68 })),
  },
  {
    name: "x86_32/mutant/emulate-call-result-dropped", bits: 32, frame: "idt", sites: "ftrace", emulates: ["call"], mutantOf: "x86_32/2019-05-04",
    breaks: "§7.5: the pt_regs returned by int3_emulate_call is thrown away — the exit restores from the stale, shifted frame",
    summary: "ignored return value",
    boot: () => buildKernel32((k, at, h) => assembleInt3Entry32Move(k, at, { handler: h, reserve: true }), (k) => installDoKernelInt3Move(k, { dropResult: true })),
  },
  {
    name: "x86_32/mutant/no-stack-reservation", bits: 32, frame: "idt", sites: "ftrace", emulates: ["call"], mutantOf: "x86_32/2019-05-04",
    breaks: "§7.6: without `subl $8, %esp` the one-word move of pt_regs overwrites the call's return address",
    summary: "reservation dropped",
    boot: () => buildKernel32((k, at, h) => assembleInt3Entry32Move(k, at, { handler: h, reserve: false }), (k) => installDoKernelInt3Move(k, {})),
  },
  {
    name: "x86_32/mutant/sp-from-regs-address", bits: 32, frame: "idt", sites: "notifier", emulates: ["call"], mutantOf: "x86_32/v5.3",
    breaks: "§7.7: the interrupted SP computed as &regs->sp on a gapped frame",
    summary: "kernel_stack_pointer() = &regs->sp",
    boot: () => buildKernel32(v53Entry(), (k) => { k.selftestEmulate = spFromRegsAddress; return installDoInt3(k, selftestChain); }),
  },
  {
    name: "x86_32/mutant/iret-frame-fast-path", bits: 32, frame: "idt", sites: "poke", emulates: BASIC, mutantOf: "x86_32/v5.6",
    breaks: "§7.8: when regs->sp is unchanged, IRET through the original frame — loses updates to regs->ip and ->flags",
    summary: "IRET_FRAME fast path",
    boot: () => buildKernel32(v53Entry({ iretFrameFastPath: true }), (k) => installDoInt3(k, pokeChain(POKE_V56))),
  },
  {
    name: "x86_32/mutant/kernel-frame-seen-as-user", bits: 32, frame: "idt", sites: "notifier", emulates: ["call"], mutantOf: "x86_32/v5.3",
    breaks: "§7.15 (81ff2c37f9e5): the from-kernel test misclassifies the kernel's own frames as user, so FIXUP_FRAME never completes them",
    summary: "no fix-up for kernel frames",
    boot: () => buildKernel32(v53Entry({ neverFixup: true }), (k) => installDoInt3(k, selftestChain)),
  },
];

/**
 * i386 mutants of the exit path that the campaign (kernel-mode int3s, whose IRET never
 * faults) cannot see: killed by the bad-user-frame property (oracle/bad-iret.ts) or the
 * ESPFIX / user-segments property (oracle/espfix.ts), not by `checkVariant`. Kept out of
 * MUTANTS_32 for that reason.
 */
export const IRET_MUTANTS_32: readonly Variant[] = [
  {
    name: "x86_32/mutant/iret-extable-misses-iret", bits: 32, frame: "idt", sites: "notifier", emulates: ["call"], mutantOf: "x86_32/v5.3",
    breaks: "§7.15 (40ad2199580e): `.Lirq_return` labels IRET_FRAME, not the IRET, so _ASM_EXTABLE(.Lirq_return, iret_exc) misses it — a faulting IRET to a bad user frame oopses instead of signalling the task",
    summary: "3c88c692c287 as released in v5.3/v5.4",
    boot: () => buildKernel32(v53Entry({ irqReturnBeforeIretFrame: true }), (k) => installDoInt3(k, selftestChain)),
  },
  {
    name: "x86_32/mutant/iret-frame-ds-not-ss", bits: 32, frame: "idt", sites: "notifier", emulates: ["call"], mutantOf: "x86_32/v5.3",
    breaks: "§7.15 (4c4fd55d3d59): IRET_FRAME rebuilds the frame below regs->sp through DS — which by then holds the interrupted frame's DS — not %ss: a kernel-mode exception taken in the exit path after RESTORE_REGS loaded a user's null or based DS (a bad user ES/FS, or an IRET faulting on the ESPFIX stack) returns through a frame written elsewhere, or faults writing it",
    summary: "IRET_FRAME before 4c4fd55d3d59",
    boot: () => buildKernel32(v53Entry({ iretFrameDs: true }), (k) => installDoInt3(k, selftestChain)),
  },
  {
    name: "x86_32/mutant/espfix-unwound-after-fixup-frame", bits: 32, frame: "idt", sites: "notifier", emulates: ["call"], mutantOf: "x86_32/v5.3",
    breaks: "Nov 2019 x86/urgent (a1a338e5b6fe): common_exception unwinds the ESPFIX stack only after FIXUP_FRAME, so a fault taken on it (an IRET or a segment pop to a bad user frame) gets regs->ss = __ESPFIX_SS and regs->sp an offset in that segment — and IRET_FRAME, back on the flat stack, rebuilds the frame at that offset as a linear address",
    summary: "v5.3/v5.4 as released: UNWIND_ESPFIX_STACK after SAVE_ALL",
    boot: () => buildKernel32(v53Entry({ espfixUnwoundLate: true }), (k) => installDoInt3(k, selftestChain)),
  },
];
