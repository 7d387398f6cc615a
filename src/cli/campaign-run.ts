import type { Variant } from "../kernel/variant.js";
import { checkVariant, expectedCells, type PropertyReport } from "../oracle/campaign.js";
import { CandidateError } from "./usage.js";

/** One variant's campaign, as the CLI runs it. */
export interface VariantRun {
  readonly variant: Variant;
  /** Runs per property asked for (checkVariant's default when the user gave none). */
  readonly runs: number;
  /** Coverage cells the variant must exercise. */
  readonly cells: number;
  readonly reports: readonly PropertyReport[];
  readonly ms: number;
}

export interface RunOptions {
  readonly runs?: number;
  readonly seed: number;
  readonly path?: string;
  /** A user's variant: an exception from its boot() is a CandidateError, not a crash. */
  readonly candidate?: boolean;
}

/** Runs checkVariant (both properties) on one variant and times it. */
export function runCampaign(v: Variant, o: RunOptions): VariantRun {
  const cells = expectedCells(v).length;
  const runs = o.runs ?? Math.max(300, 16 * cells);
  const t0 = performance.now();
  let reports: PropertyReport[];
  try {
    reports = checkVariant(v, { runs, seed: o.seed, ...(o.path === undefined ? {} : { path: o.path }) });
  } catch (e) {
    if (o.candidate !== true) throw e;
    throw new CandidateError(`candidate '${v.name}' threw while booting: ${e instanceof Error ? `${e.name}: ${e.message}` : String(e)}`.split("\n")[0]);
  }
  return { variant: v, runs, cells, reports, ms: performance.now() - t0 };
}
