import { UsageError } from "../errors.js";
import { PATCH_KINDS, type PatchKind, type Variant } from "../kernel/variant.js";
import { ALL_MUTANTS, ALL_VARIANTS } from "../kernel/registry.js";
import { loadCandidates } from "./candidate.js";

/** The architectures `--arch` selects. */
export const ARCHES = ["x86_64", "x86_32", "fred"] as const;
export type Arch = (typeof ARCHES)[number];

/** x86_64: 64-bit with IDT delivery; x86_32: 32-bit; fred: FRED delivery. */
export function isArch(v: Variant, a: Arch): boolean {
  switch (a) {
    case "x86_64": return v.bits === 64 && v.frame === "idt";
    case "x86_32": return v.bits === 32;
    case "fred": return v.frame === "fred";
  }
}

/** What the user asked to check (empty lists: no restriction). */
export interface Selection {
  readonly names: readonly string[];
  readonly arches: readonly Arch[];
  readonly opcodes: readonly PatchKind[];
}

/** Validates --arch and --opcode values (UsageError listing the valid ones). */
export function parseSelection(names: readonly string[], arches: readonly string[], opcodes: readonly string[]): Selection {
  for (const a of arches) if (!(ARCHES as readonly string[]).includes(a)) throw new UsageError(`unknown --arch '${a}'; valid: ${ARCHES.join(", ")}`);
  for (const o of opcodes) if (!(PATCH_KINDS as readonly string[]).includes(o)) throw new UsageError(`unknown --opcode '${o}'; valid: ${PATCH_KINDS.join(", ")}`);
  return { names, arches: arches as Arch[], opcodes: opcodes as PatchKind[] };
}

/** A shallow copy of `v` that claims only the given kinds (undefined when none are left). */
export function restrictKinds(v: Variant, kinds: readonly PatchKind[]): Variant | undefined {
  if (kinds.length === 0) return v;
  const emulates = v.emulates.filter((k) => kinds.includes(k));
  if (emulates.length === 0) return undefined;
  return { ...v, emulates, boot: () => v.boot() };
}

export interface Selected {
  readonly variants: readonly Variant[];
  /** Variants the selection named or matched but left nothing to check in, with why. */
  readonly skipped: readonly string[];
}

/**
 * Applies a selection. `named` is where --variant looks names up (built-ins: variants and
 * mutants; candidates: their own); without names, `pool` is checked. Variants that emulate
 * nothing (or none of --opcode) are skipped; an empty result is a UsageError.
 */
export function selectVariants(pool: readonly Variant[], named: readonly Variant[], s: Selection): Selected {
  const start = s.names.length === 0 ? pool : s.names.map((n) => {
    const v = named.find((x) => x.name === n);
    if (v === undefined) throw new UsageError(`no variant '${n}'; known: ${named.map((x) => x.name).join(", ")}`);
    return v;
  });
  const variants: Variant[] = [];
  const skipped: string[] = [];
  for (const v of start) {
    if (s.arches.length > 0 && !s.arches.some((a) => isArch(v, a))) continue;
    if (v.emulates.length === 0) { skipped.push(`${v.name}: emulates no instruction, nothing to check`); continue; }
    const r = restrictKinds(v, s.opcodes);
    if (r === undefined) { skipped.push(`${v.name}: emulates none of ${s.opcodes.join(", ")}`); continue; }
    variants.push(r);
  }
  if (variants.length === 0) throw new UsageError(`nothing to check: no variant matches the selection${skipped.length > 0 ? ` (${skipped.join("; ")})` : ""}`);
  return { variants, skipped };
}

/**
 * Where a campaign's variants come from, as plain data a worker thread can rebuild them
 * from: built-in names (variants and mutants) or a candidate module's, narrowed to --opcode.
 */
export interface VariantSource {
  readonly candidate?: string;
  readonly names: readonly string[];
  readonly opcodes: readonly PatchKind[];
}

/** The variants a source names, in its order (a missing name is a UsageError). */
export function resolveVariants(src: VariantSource): Variant[] {
  const named = src.candidate === undefined ? [...ALL_VARIANTS, ...ALL_MUTANTS] : loadCandidates(src.candidate);
  return src.names.map((n) => {
    const v = named.find((x) => x.name === n);
    if (v === undefined) throw new UsageError(`no variant '${n}'; known: ${named.map((x) => x.name).join(", ")}`);
    const r = restrictKinds(v, src.opcodes);
    if (r === undefined) throw new UsageError(`${n}: emulates none of ${src.opcodes.join(", ")}`);
    return r;
  });
}
