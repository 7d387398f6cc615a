import type { Kernel } from "./kernel.js";

/** The instruction kinds the int3 path emulates (properties have a cell for each). */
export type PatchKind = "call" | "jmp32" | "jmp8" | "nop2" | "nop5" | "ret" | "jcc8" | "jcc32";
export const PATCH_KINDS: readonly PatchKind[] = ["call", "jmp32", "jmp8", "nop2", "nop5", "ret", "jcc8", "jcc32"];

/**
 * A kernel model: a small description built from shared parts. `boot` makes a fresh
 * kernel (stubs assembled, C functions installed, gates set). A mutant is a variant that
 * reintroduces a bug; `breaks` says what.
 */
export interface Variant {
  /** e.g. "x86_64/v5.2", "x86_64/mutant/no-gap". */
  readonly name: string;
  readonly bits: 32 | 64;
  readonly frame: "idt" | "fred";
  /** One line: what this version does at the int3. */
  readonly summary: string;
  /** Kinds this variant claims to emulate exactly. */
  readonly emulates: readonly PatchKind[];
  /**
   * How a site in transition is declared: an ftrace fentry site (the kernel picks the callee,
   * ftrace_regs_caller), a text_poke_bp descriptor, or the int3 self-test's die notifier.
   */
  readonly sites: "ftrace" | "poke" | "notifier";
  /** For mutants: the variant they break and what they break (spec §7 item, when there is one). */
  readonly mutantOf?: string;
  readonly breaks?: string;
  boot(): Kernel;
}
