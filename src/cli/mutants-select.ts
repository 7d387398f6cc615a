import { UsageError } from "../errors.js";
import type { SmpVariant } from "../kernel/smp-variants.js";
import type { Variant } from "../kernel/variant.js";
import { type Arch, ARCHES, isArch } from "./select.js";

/** The mutants `int3bed mutants` checks: single-CPU (the campaign) and multi-CPU (spec §7). */
export interface MutantPools {
  readonly cpu: readonly Variant[];
  readonly smp: readonly SmpVariant[];
  /** Exit-path mutants, killed by the bad-user-frame property (oracle/bad-iret.ts). */
  readonly iret?: readonly Variant[];
}

/**
 * Narrows both pools by --variant (names from either pool; unknown names are a UsageError
 * listing them all) and --arch (the SMP models are all x86_64). Nothing left is a UsageError.
 */
export function selectMutants(pools: MutantPools, names: readonly string[], arches: readonly string[]): MutantPools {
  for (const a of arches) if (!(ARCHES as readonly string[]).includes(a)) throw new UsageError(`unknown --arch '${a}'; valid: ${ARCHES.join(", ")}`);
  const iret = pools.iret ?? [];
  const all = [...pools.cpu.map((m) => m.name), ...iret.map((m) => m.name), ...pools.smp.map((m) => m.name)];
  for (const n of names) if (!all.includes(n)) throw new UsageError(`no mutant '${n}'; known: ${all.join(", ")}`);
  const named = (n: string): boolean => names.length === 0 || names.includes(n);
  const archOk = (ok: (a: Arch) => boolean): boolean => arches.length === 0 || (arches as Arch[]).some(ok);
  const out = {
    cpu: pools.cpu.filter((m) => named(m.name) && archOk((a) => isArch(m, a))),
    smp: pools.smp.filter((m) => named(m.name) && archOk((a) => a === "x86_64")),
    iret: iret.filter((m) => named(m.name) && archOk((a) => isArch(m, a))),
  };
  if (out.cpu.length + out.smp.length + out.iret.length === 0) throw new UsageError("nothing to check: no mutant matches --variant/--arch");
  return out;
}
