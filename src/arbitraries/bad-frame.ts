import fc from "fast-check";
import type { KernelLayout } from "../kernel/layout.js";
import { SEL64 } from "../machine/tables.js";
import type { PatchKind } from "../kernel/variant.js";
import { emuCase } from "./emulation.js";
import type { EmuCase } from "../oracle/emulation.js";

/**
 * What a debugger (PTRACE_SETREGS at the SIGTRAP stop) or a later sigreturn writes into the
 * task's saved frame before it returns to user mode: nothing, or one bad selector in
 * pt_regs->cs or ->ss.
 */
export interface BadFrame {
  readonly field: "none" | "cs" | "ss";
  /** The 16-bit selector written (ignored for "none"). */
  readonly selector: number;
}

/** A user-mode int3 case and what is done to its saved frame. */
export interface BadFrameCase {
  readonly c: EmuCase;
  readonly bad: BadFrame;
}

/**
 * A selector the kernel lets into a user frame but that IRET rejects for this field: RPL 3
 * (sigreturn ORs in 3; ptrace's set_segment_reg refuses 0 and any RPL but 3), anything but the
 * valid one — the kernel's own selectors with RPL 3, the other user selector (data as CS,
 * code as SS), the null selector 3, LDT selectors (no LDT is set up), indexes past the GDT —
 * and random ones. On x86-64 the compat-mode user CS (__USER32_CS, 0x23) is not bad — an IRETQ
 * to it is a valid return to 32-bit code, which the machine does not model — so it is left out.
 */
export function badSelector(L: KernelLayout, field: "cs" | "ss"): fc.Arbitrary<number> {
  const good = field === "cs" ? L.userCs : L.userSs;
  const other = field === "cs" ? L.userSs : L.userCs;
  const alsoGood = L.bits === 64 && field === "cs" ? SEL64.USER32_CS : good;
  return fc.oneof(
    fc.constantFrom(L.kernelCs | 3, L.kernelSs | 3, other, 0x3, 0x7, good | 4, 0xfffb, 0xffff),
    fc.integer({ min: 0, max: 0x1fff }).map((i) => (i << 3) | 3),
    fc.integer({ min: 0, max: 0x1fff }).map((i) => (i << 3) | 7),
  ).filter((s) => s !== good && s !== alsoGood);
}

/** The saved-frame change: a third of the cases leave it alone (the task must then return normally). */
export function badFrame(L: KernelLayout): fc.Arbitrary<BadFrame> {
  return fc.oneof(
    fc.constant<BadFrame>({ field: "none", selector: 0 }),
    badSelector(L, "cs").map((selector): BadFrame => ({ field: "cs", selector })),
    badSelector(L, "ss").map((selector): BadFrame => ({ field: "ss", selector })),
  );
}

/**
 * Cases for the bad-user-frame property: emuCase's random machine states (registers, flags,
 * stack contents, the user SP's low bits from spOffset) and a frame change. `kinds` is only
 * what the kernel side arms at the same time (a variant that emulates nothing arms a call).
 */
export function badFrameCase(L: KernelLayout, kinds: readonly PatchKind[]): fc.Arbitrary<BadFrameCase> {
  return fc.record({ c: emuCase(L, kinds.length > 0 ? kinds : ["call"]), bad: badFrame(L) });
}
