import { assembleClobberThunk64, assembleFtraceRegsCaller64, assembleInt3Entry64 } from "./entry-64.js";
import { assembleGeneralProtection64 } from "./entry-64-exceptions.js";
import type { PtRegs } from "./pt-regs.js";
import { pokeInt3HandlerEmulate, pokeInt3HandlerV52, type PokeFeatures } from "./alternative.js";
import { ftraceInt3HandlerV51, ftraceInt3HandlerV52, type FtraceInt3Options } from "./ftrace.js";
import { Kernel } from "./kernel.js";
import { type Int3Chain, installDieGates, installDoInt3 } from "./traps.js";
import type { PatchKind, Variant } from "./variant.js";

/** Exceptions other than #BP that a kernel model turns into an oops; #GP (13) goes through general_protection and error_entry. */
const DIE_VECTORS = [0, 6, 8, 10, 11, 12, 14];

/** The parts an x86-64 IDT kernel model is built from. */
export interface Parts64 {
  readonly gapWords: number;
  readonly chain: (k: Kernel) => Int3Chain;
  /** §7.14: a second int3 entry (Xen PV's `xenint3`) assembled without the gap and wired to #BP. */
  readonly xenPvEntry?: boolean;
  /** Mutant: the exit IRETQs through the original hardware frame, not the gap copy. */
  readonly exitFromOriginal?: boolean;
  /** Mutant: the address error_entry takes for native_irq_return_iret, given the real one. */
  readonly badIretRip?: (nativeIrqReturnIret: bigint) => bigint;
}

/**
 * Boots an x86-64 kernel from parts: do_int3 with the given handler chain, the int3 entry
 * stub with `gapWords` of gap (gate DPL 3, interrupt gate, no IST) whose IRETQ is
 * `native_irq_return_iret`, ftrace_regs_caller, the #GP path (general_protection,
 * error_entry with the bad-IRET fix-up through fixup_bad_iret; entry-64-exceptions.ts), and
 * oops gates for the other exceptions. The building block for user variants too.
 */
export function buildKernel64(p: Parts64): Kernel {
  const k = new Kernel(64);
  const L = k.L;
  const chain = p.chain(k);
  const doInt3 = installDoInt3(k, chain);
  const tracer = k.host("ftrace_ops_list_func", (call) => {
    k.events.push({ kind: "traced", ip: call.arg(0), parentIp: call.arg(1) });
  });
  let next = assembleInt3Entry64(k, L.text, { gapWords: p.gapWords, handler: doInt3, exitFromOriginal: p.exitFromOriginal === true });
  let int3 = k.addr("asm_int3");
  if (p.xenPvEntry) {
    const at = (next + 0x3fn) & ~0x3fn;
    next = assembleInt3Entry64(k, at, { gapWords: 0, handler: doInt3, iretAt: k.addr("native_irq_return_iret") });
    k.sym.set("xen_asm_int3", at);
    int3 = at;
  }
  next = assembleFtraceRegsCaller64(k, (next + 0x3fn) & ~0x3fn, tracer);
  next = assembleClobberThunk64(k, (next + 0x3fn) & ~0x3fn);
  const iret = k.addr("native_irq_return_iret");
  assembleGeneralProtection64(k, (next + 0x3fn) & ~0x3fn, { badIretRip: p.badIretRip?.(iret) ?? iret });
  k.m.setGate(3, { handler: int3, dpl: 3, ist: 0, type: "interrupt" });
  installDieGates(k, DIE_VECTORS);
  return k;
}

const POKE_V56: PokeFeatures = { ret: false, jcc: false };
const POKE_V510: PokeFeatures = { ret: true, jcc: false };
const POKE_V62: PokeFeatures = { ret: true, jcc: true };
const BASIC: readonly PatchKind[] = ["call", "jmp32", "jmp8", "nop2", "nop5"];

function v52Chain(o: FtraceInt3Options = {}) {
  return (): Int3Chain => ({ ftrace: (k, r) => ftraceInt3HandlerV52(k, r, o), poke: pokeInt3HandlerV52 });
}

function pokeChain(f: PokeFeatures) {
  return (): Int3Chain => ({ poke: (k, r) => pokeInt3HandlerEmulate(k, r, f) });
}

/** The x86-64 kernel models, by name. */
export const VARIANTS_64: readonly Variant[] = [
  {
    name: "x86_64/2019-05-04", bits: 64, frame: "idt", sites: "ftrace", emulates: ["call"],
    summary: "the seed's design (LKML, May 2019): 6-word gap for kernel-mode int3, ftrace emulates the call",
    boot: () => buildKernel64({ gapWords: 6, chain: v52Chain() }),
  },
  {
    name: "x86_64/v5.1", bits: 64, frame: "idt", sites: "ftrace", emulates: [],
    summary: "before the fix: an int3 on an ftrace site skips the 5-byte call (livepatch lost, §7.1)",
    boot: () => buildKernel64({ gapWords: 0, chain: () => ({ ftrace: ftraceInt3HandlerV51, poke: pokeInt3HandlerV52 }) }),
  },
  {
    name: "x86_64/v5.2", bits: 64, frame: "idt", sites: "ftrace", emulates: ["call"],
    summary: "as merged: void int3_emulate_*, the 6-word gap, ftrace emulates a call to ftrace_regs_caller",
    boot: () => buildKernel64({ gapWords: 6, chain: v52Chain() }),
  },
  {
    name: "x86_64/v5.6", bits: 64, frame: "idt", sites: "poke", emulates: BASIC,
    summary: "poke_int3_handler emulates the new instruction by opcode: CALL, JMP32, JMP8, NOP2/NOP5 as jumps",
    boot: () => buildKernel64({ gapWords: 6, chain: pokeChain(POKE_V56) }),
  },
  {
    name: "x86_64/v5.10", bits: 64, frame: "idt", sites: "poke", emulates: [...BASIC, "ret"],
    summary: "v5.6 plus RET emulation (static_call)",
    boot: () => buildKernel64({ gapWords: 6, chain: pokeChain(POKE_V510) }),
  },
  {
    name: "x86_64/v6.2", bits: 64, frame: "idt", sites: "poke", emulates: [...BASIC, "ret", "jcc8", "jcc32"],
    summary: "v5.10 plus Jcc8/Jcc32 through int3_emulate_jcc",
    boot: () => buildKernel64({ gapWords: 6, chain: pokeChain(POKE_V62) }),
  },
];

/**
 * §7.10: the emulated CALL reaches its callee through code that clobbers caller-saved
 * registers the interrupted code relies on (the KASAN-instrumented C int3_magic): the
 * handler emulates the call to a thunk that trashes them and jumps on (via r11) to the target.
 */
function clobberingChain(f: PokeFeatures) {
  return (k: Kernel): Int3Chain => ({
    poke: (kk, regs: PtRegs) => {
      const before = regs.ip;
      if (!pokeInt3HandlerEmulate(kk, regs, f)) return false;
      const tp = kk.bpDesc.vec[0];
      if (tp !== undefined && tp.opcode === 0xe8 && before - 1n === tp.addr) {
        regs.set("r11", regs.ip);
        regs.ip = k.addr("clobber_thunk");
      }
      return true;
    },
  });
}

/** x86-64 mutants: each reintroduces one bug and must be killed by the properties. */
export const MUTANTS_64: readonly Variant[] = [
  {
    name: "x86_64/mutant/no-gap", bits: 64, frame: "idt", sites: "poke", emulates: BASIC, mutantOf: "x86_64/v5.6",
    breaks: "§7.19/§3.1: no gap — the virtual push at R−8 overwrites pt_regs->ss when R ≡ 0 (mod 16)",
    summary: "entry without the 6-word copy",
    boot: () => buildKernel64({ gapWords: 0, chain: pokeChain(POKE_V56) }),
  },
  {
    name: "x86_64/mutant/gap-5-words", bits: 64, frame: "idt", sites: "poke", emulates: BASIC, mutantOf: "x86_64/v5.6",
    breaks: "a 5-word copy: orig_ax is not copied, so the copied frame is off by one word",
    summary: "`.rept 5` instead of 6",
    boot: () => buildKernel64({ gapWords: 5, chain: pokeChain(POKE_V56) }),
  },
  {
    name: "x86_64/mutant/ftrace-skips-call", bits: 64, frame: "idt", sites: "ftrace", emulates: ["call"], mutantOf: "x86_64/v5.2",
    breaks: "§7.1: at an ftrace site the int3 emulates a NOP (jmp ip+5) instead of CALL(ftrace_regs_caller)",
    summary: "v5.1's ftrace_int3_handler on the v5.2 entry",
    boot: () => buildKernel64({ gapWords: 6, chain: () => ({ ftrace: ftraceInt3HandlerV51, poke: pokeInt3HandlerV52 }) }),
  },
  {
    name: "x86_64/mutant/ftrace-wrong-target", bits: 64, frame: "idt", sites: "ftrace", emulates: ["call"], mutantOf: "x86_64/v5.2",
    breaks: "§7.2: the ftrace_location case calls ftrace_update_func_call instead of ftrace_regs_caller",
    summary: "targets of the two ftrace_int3_handler branches swapped",
    boot: () => buildKernel64({ gapWords: 6, chain: v52Chain({ swapTargets: true }) }),
  },
  {
    name: "x86_64/mutant/callee-clobbers-registers", bits: 64, frame: "idt", sites: "poke", emulates: ["call"], mutantOf: "x86_64/v5.6",
    breaks: "§7.10: the emulated call's path to the callee clobbers caller-saved registers (KASAN int3_magic)",
    summary: "CALL emulated through a register-clobbering thunk",
    boot: () => buildKernel64({ gapWords: 6, chain: clobberingChain(POKE_V56) }),
  },
  {
    name: "x86_64/mutant/xen-pv-int3-without-gap", bits: 64, frame: "idt", sites: "poke", emulates: BASIC, mutantOf: "x86_64/v5.6",
    breaks: "§7.14 (b23e5844dfe7): a second entry path for #BP (Xen PV `idtentry xenint3 … ` without create_gap)",
    summary: "#BP wired to a gapless second entry",
    boot: () => buildKernel64({ gapWords: 6, chain: pokeChain(POKE_V56), xenPvEntry: true }),
  },
  {
    name: "x86_64/mutant/iret-from-original-frame", bits: 64, frame: "idt", sites: "poke", emulates: BASIC, mutantOf: "x86_64/v5.6",
    breaks: "the exit returns through the original hardware frame instead of the gap copy: updates to regs->ip/sp are lost",
    summary: "IRETQ from the uncopied frame",
    boot: () => buildKernel64({ gapWords: 6, chain: pokeChain(POKE_V56), exitFromOriginal: true }),
  },
  {
    name: "x86_64/mutant/jcc-and-for-or", bits: 64, frame: "idt", sites: "poke", emulates: ["jcc8", "jcc32"], mutantOf: "x86_64/v6.2",
    breaks: "int3_emulate_jcc combines SF^OF with ZF using && instead of || for JLE/JG",
    summary: "Jcc with && for ||",
    boot: () => buildKernel64({ gapWords: 6, chain: pokeChain({ ...POKE_V62, jccAnd: true }) }),
  },
];

/**
 * x86-64 mutants of the exit path that the campaign (kernel-mode int3s, whose IRETQ never
 * faults) cannot see: killed by the bad-user-frame property (oracle/bad-iret.ts). Kept out of
 * MUTANTS_64 for that reason.
 */
export const IRET_MUTANTS_64: readonly Variant[] = [
  {
    name: "x86_64/mutant/bad-iret-rip-unrecognised", bits: 64, frame: "idt", sites: "poke", emulates: BASIC, mutantOf: "x86_64/v5.6",
    breaks: "error_entry compares the #GP's RIP with the instruction before native_irq_return_iret, not the IRETQ itself: a faulting IRETQ to a bad user frame is taken for a kernel #GP (no fixup_bad_iret) and oopses instead of signalling the task",
    summary: "`.Lerror_kernelspace` misses the IRETQ by one instruction",
    boot: () => buildKernel64({ gapWords: 6, chain: pokeChain(POKE_V56), badIretRip: (iret) => iret - 4n }),
  },
];
