import { UsageError } from "../errors.js";
import type { Variant } from "./variant.js";
import { IRET_MUTANTS_32, MUTANTS_32, VARIANTS_32 } from "./variants-32.js";
import { IRET_MUTANTS_64, MUTANTS_64, VARIANTS_64 } from "./variants-64.js";
import { MUTANTS_FRED, VARIANTS_FRED } from "./variants-fred.js";

/** Every built-in kernel model, in version order per architecture. */
export const ALL_VARIANTS: readonly Variant[] = [...VARIANTS_64, ...VARIANTS_32, ...VARIANTS_FRED];
/** Every built-in mutant (spec §7 bugs and the design mutants). */
export const ALL_MUTANTS: readonly Variant[] = [...MUTANTS_64, ...MUTANTS_32, ...MUTANTS_FRED];
/**
 * Mutants of the exit path — i386's exception table (spec §7.15, 40ad2199580e), IRET_FRAME's
 * segment (4c4fd55d3d59), the ESPFIX unwind (a1a338e5b6fe), x86-64's
 * error_entry/fixup_bad_iret: invisible to the campaign (a kernel-mode int3's IRET never
 * faults and its segments are the kernel's), killed by the bad-user-frame property
 * (oracle/bad-iret.ts) or the user-segments/ESPFIX property (oracle/espfix.ts); `int3bed
 * mutants` checks them in a section of their own.
 */
export const IRET_MUTANTS: readonly Variant[] = [...IRET_MUTANTS_32, ...IRET_MUTANTS_64];

/** Looks a variant or mutant up by name; a UsageError lists the names when there is none. */
export function variantByName(name: string): Variant {
  const all = [...ALL_VARIANTS, ...ALL_MUTANTS, ...IRET_MUTANTS];
  const v = all.find((x) => x.name === name);
  if (v === undefined) throw new UsageError(`no variant '${name}'; known: ${all.map((x) => x.name).join(", ")}`);
  return v;
}

/** The multi-CPU patching models and their mutants (spec §7 items 9, 11, 12, 13, 16, 18): a parallel registry. */
export { SMP_VARIANTS, SMP_MUTANTS, smpVariantByName } from "./smp-variants.js";
