import fc from "fast-check";
import { F } from "../machine/flags.js";
import { SEL32 } from "../machine/tables.js";

/**
 * What a 32-bit task holds in a data segment register when it enters the kernel: a null
 * selector (sigreturn_32's "maximally insane" DS/ES), __USER_DS, or a segment with a base of
 * its own — a TLS entry (set_thread_area) or an LDT entry (modify_ldt), as Wine and DOSEMU
 * use them.
 */
export type UserSegment =
  | { readonly kind: "null" }
  | { readonly kind: "user" }
  | { readonly kind: "tls" | "ldt"; readonly base: number };

/**
 * What the ptrace stop (PTRACE_SETREGS, or a later sigreturn) writes into the task's saved
 * frame before it returns: nothing, a CS or SS the IRET rejects (#GP), or a DS/ES/FS selector
 * that RESTORE_REGS's `popl` rejects (#GP, fixed up to a null selector).
 */
export interface UserFrameChange {
  readonly field: "none" | "cs" | "ss" | "ds" | "es" | "fs";
  readonly selector: number;
}

/**
 * A user-mode int3 on i386 and the way back: the task's registers and flags, its stack —
 * __USER_DS, or a 32-bit LDT data segment with a base of its own, which sends the return
 * through the ESPFIX stack — its ESP (any 32 bits with an LDT stack; the low 12 bits with
 * __USER_DS), its DS/ES/FS/GS, and the frame change at the SIGTRAP stop.
 */
export interface UserSegmentsCase {
  /** EAX … EDI (ESP's slot ignored). */
  readonly regs: readonly number[];
  readonly flags: number;
  readonly stack: "gdt" | "ldt";
  readonly esp: number;
  readonly ds: UserSegment;
  readonly es: UserSegment;
  readonly fs: UserSegment;
  readonly gs: UserSegment;
  readonly change: UserFrameChange;
  /** Bytes of the user's stack above its SP (repeated). */
  readonly stackBytes: readonly number[];
}

const u32 = fc.oneof(fc.constantFrom(0, 0xffffffff, 0x7fffffff, 0x80000000, 0xffff0000, 0x0000ffff), fc.integer({ min: 0, max: 0xffffffff }));

export const userSegment: fc.Arbitrary<UserSegment> = fc.oneof(
  fc.constant<UserSegment>({ kind: "null" }),
  fc.constant<UserSegment>({ kind: "user" }),
  fc.record({ kind: fc.constantFrom<"tls" | "ldt">("tls", "ldt"), base: u32 }),
);

/**
 * Selectors IRET rejects with #GP for CS / SS (RPL 3 as sigreturn and ptrace leave them):
 * the kernel's with RPL 3, the other user selector, the null selector 3, past the GDT, past
 * the task's LDT; and selectors RESTORE_REGS's pops reject for DS/ES/FS: the kernel's with
 * RPL 3, past the GDT or the LDT.
 */
export const BAD_SELECTORS: Readonly<Record<Exclude<UserFrameChange["field"], "none">, readonly number[]>> = {
  cs: [SEL32.KERNEL_CS | 3, SEL32.KERNEL_DS | 3, SEL32.USER_DS, 0x3, 0xfffb, (40 << 3) | 7],
  ss: [SEL32.KERNEL_CS | 3, SEL32.KERNEL_DS | 3, SEL32.USER_CS, 0x3, 0xfffb, (40 << 3) | 7],
  ds: [SEL32.KERNEL_CS | 3, SEL32.KERNEL_DS | 3, 0xfffb, (40 << 3) | 7],
  es: [SEL32.KERNEL_CS | 3, SEL32.KERNEL_DS | 3, 0xfffb, (40 << 3) | 7],
  fs: [SEL32.KERNEL_CS | 3, SEL32.KERNEL_DS | 3, 0xfffb, (40 << 3) | 7],
};

export const userFrameChange: fc.Arbitrary<UserFrameChange> = fc.oneof(
  { weight: 2, arbitrary: fc.constant<UserFrameChange>({ field: "none", selector: 0 }) },
  ...(["cs", "ss", "ds", "es", "fs"] as const).map((field) => ({
    weight: 1, arbitrary: fc.constantFrom(...BAD_SELECTORS[field]).map((selector): UserFrameChange => ({ field, selector })),
  })),
);

/** Cases for the ESPFIX / user-segments property. */
export function userSegmentsCase(): fc.Arbitrary<UserSegmentsCase> {
  return fc.record({
    regs: fc.array(u32, { minLength: 8, maxLength: 8 }),
    flags: fc.integer({ min: 0, max: 0xfff }).map((f) => f & (F.CF | F.PF | F.AF | F.ZF | F.SF | F.OF | F.DF)),
    stack: fc.constantFrom<"gdt" | "ldt">("gdt", "ldt"),
    esp: u32,
    ds: userSegment, es: userSegment, fs: userSegment, gs: userSegment,
    change: userFrameChange,
    stackBytes: fc.array(fc.integer({ min: 0, max: 255 }), { minLength: 1, maxLength: 8 }),
  });
}
