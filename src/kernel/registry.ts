import { UsageError } from "../errors.js";
import type { Variant } from "./variant.js";
import { MUTANTS_32, VARIANTS_32 } from "./variants-32.js";
import { MUTANTS_64, VARIANTS_64 } from "./variants-64.js";
import { MUTANTS_FRED, VARIANTS_FRED } from "./variants-fred.js";

/** Every built-in kernel model, in version order per architecture. */
export const ALL_VARIANTS: readonly Variant[] = [...VARIANTS_64, ...VARIANTS_32, ...VARIANTS_FRED];
/** Every built-in mutant (spec §7 bugs and the design mutants). */
export const ALL_MUTANTS: readonly Variant[] = [...MUTANTS_64, ...MUTANTS_32, ...MUTANTS_FRED];

/** Looks a variant or mutant up by name; a UsageError lists the names when there is none. */
export function variantByName(name: string): Variant {
  const v = [...ALL_VARIANTS, ...ALL_MUTANTS].find((x) => x.name === name);
  if (v === undefined) throw new UsageError(`no variant '${name}'; known: ${[...ALL_VARIANTS, ...ALL_MUTANTS].map((x) => x.name).join(", ")}`);
  return v;
}

/** The multi-CPU patching models and their mutants (spec §7 items 9, 11, 12, 13, 16, 18): a parallel registry. */
export { SMP_VARIANTS, SMP_MUTANTS, smpVariantByName } from "./smp-variants.js";
