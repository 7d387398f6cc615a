import fc from "fast-check";
import type { Variant } from "../kernel/variant.js";
import { emuCase } from "../arbitraries/emulation.js";
import { type Bench, type EmuCase, prepare, runEmuCase } from "./emulation.js";
import { checkTrapInvariants } from "./invariants.js";

/** What one property run over one variant found. */
export interface PropertyReport {
  readonly variant: string;
  readonly property: "emulated ≡ real" | "handler invariants";
  readonly runs: number;
  readonly ok: boolean;
  readonly seed: number;
  /** fast-check's replay path of the failure. */
  readonly path?: string;
  /** The shrunk counterexample. */
  readonly counterexample?: EmuCase;
  /** Why it failed, in one paragraph. */
  readonly detail?: string;
  readonly ms: number;
  /** Coverage cells (opcode × frame × alignment class × stack) exercised and missed. */
  readonly covered: readonly string[];
  readonly missing: readonly string[];
}

/** Alignment classes of the interrupted stack pointer per word size. */
export const ALIGN_CLASSES: Record<32 | 64, readonly string[]> = {
  64: ["sp&8=0", "sp&8=8"],
  32: ["sp%4=0", "sp%4=1", "sp%4=2", "sp%4=3"],
};

export function alignClass(bits: 32 | 64, spOffset: number): string {
  return bits === 64 ? `sp&8=${spOffset & 8}` : `sp%4=${spOffset % 4}`;
}

/** A coverage cell for a case (the variant name is implied). */
export function coverageCell(v: Variant, c: EmuCase): string {
  return `${c.kind}|${v.frame}|${alignClass(v.bits, c.spOffset)}|${c.stack}`;
}

/** Every cell a variant must exercise. */
export function expectedCells(v: Variant): string[] {
  const out: string[] = [];
  for (const kind of v.emulates) for (const al of ALIGN_CLASSES[v.bits]) for (const st of ["task", "irq"]) out.push(`${kind}|${v.frame}|${al}|${st}`);
  return out;
}

/** Why a case fails the equivalence, in one line. */
export function explainInequivalence(b: Bench, c: EmuCase): string {
  const r = runEmuCase(b, c);
  if (r.equal) return "equal";
  const regs = r.diff.registers.map((d) => `${d.name} 0x${d.a.toString(16)}≠0x${d.b.toString(16)}`).join(", ");
  return `real run ${r.real.reason}${r.real.detail ? ` (${r.real.detail})` : ""}, emulated run ${r.emulated.reason}${r.emulated.detail ? ` (${r.emulated.detail})` : ""}; ` +
    `registers: ${regs || "equal"}; memory runs differing: ${r.diff.memory.length}; traced calls ${r.realEvents.length}/${r.emulatedEvents.length}`;
}

/** The campaign's property names. */
export type PropertyName = PropertyReport["property"];

export interface CampaignOptions {
  /** Runs per property (default: 300, at least 16 per coverage cell). */
  readonly runs?: number;
  readonly seed?: number;
  readonly path?: string;
  /** Only these properties (default: both, in campaign order). */
  readonly properties?: readonly PropertyName[];
  /** A bench prepared earlier for this variant, reused instead of booting again. */
  readonly bench?: Bench;
  /** Incremented per case the equivalence property runs, by coverage cell (shrinking included). */
  readonly cellCounts?: Map<string, number>;
  /** Called after every run of either property (shrinking included): progress. */
  readonly onRun?: () => void;
}

/**
 * Runs the default property campaign on a variant — a built-in one or a user's own: the
 * emulated ≡ real property with coverage accounting, then the handler invariants. Nothing
 * random is unseeded: the same seed gives the same runs.
 */
export function checkVariant(v: Variant, o: CampaignOptions = {}): PropertyReport[] {
  if (v.emulates.length === 0) return [];
  const b = o.bench ?? prepare(v);
  const wants = (p: PropertyName): boolean => o.properties === undefined || o.properties.includes(p);
  const onRun = o.onRun ?? ((): void => undefined);
  const counts = o.cellCounts;
  const seed = o.seed ?? 20191105;
  const cells = expectedCells(v);
  const runs = o.runs ?? Math.max(300, 16 * cells.length);
  const params = { numRuns: runs, seed, ...(o.path === undefined ? {} : { path: o.path }) };
  const reports: PropertyReport[] = [];

  const covered = new Set<string>();
  let t0 = performance.now();
  if (wants("emulated ≡ real")) {
    const eq = fc.check(fc.property(emuCase(b.k.L, v.emulates), (c) => {
      const cell = coverageCell(v, c);
      covered.add(cell);
      if (counts !== undefined) counts.set(cell, (counts.get(cell) ?? 0) + 1);
      const equal = runEmuCase(b, c).equal;
      onRun();
      return equal;
    }), params);
    const missing = eq.failed ? [] : cells.filter((x) => !covered.has(x));
    const ce = eq.counterexample?.[0];
    reports.push({
      variant: v.name, property: "emulated ≡ real", runs: eq.numRuns, ok: !eq.failed && missing.length === 0, seed,
      ...(eq.failed ? { path: eq.counterexamplePath ?? undefined, counterexample: ce, detail: ce ? explainInequivalence(b, ce) : String(eq.errorInstance) } : {}),
      ...(missing.length > 0 ? { detail: `coverage: ${missing.length} cells never exercised` } : {}),
      ms: Math.round(performance.now() - t0), covered: [...covered].sort(), missing,
    });
  }

  if (!wants("handler invariants")) return reports;
  t0 = performance.now();
  const inv = fc.check(fc.property(emuCase(b.k.L, v.emulates), (c) => { const ok = checkTrapInvariants(b, c).violations.length === 0; onRun(); return ok; }), params);
  const ice = inv.counterexample?.[0];
  reports.push({
    variant: v.name, property: "handler invariants", runs: inv.numRuns, ok: !inv.failed, seed,
    ...(inv.failed ? { path: inv.counterexamplePath ?? undefined, counterexample: ice, detail: ice ? checkTrapInvariants(b, ice).violations.join("; ") : String(inv.errorInstance) } : {}),
    ms: Math.round(performance.now() - t0), covered: [], missing: [],
  });
  return reports;
}
