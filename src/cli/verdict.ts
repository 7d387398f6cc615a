import type { PropertyReport } from "../oracle/campaign.js";

/**
 * What a property report means for the exit code:
 * - held: no counterexample, every coverage cell exercised;
 * - failed: a counterexample (or the property threw);
 * - uncovered: no counterexample but cells were never exercised although the campaign ran
 *   at least 16 runs per cell — the check was weaker than it claims: a failure;
 * - partial: cells missed with fewer runs than that (the user asked for fewer with --runs),
 *   or while replaying one --path: a warning only.
 */
export type Verdict = "held" | "failed" | "uncovered" | "partial";

/** Runs per coverage cell below which a coverage miss is only a warning. */
export const RUNS_PER_CELL = 16;

export function verdict(r: PropertyReport, runs: number, cells: number, replaying: boolean): Verdict {
  if (r.ok) return "held";
  if (r.missing.length === 0) return "failed";
  return !replaying && runs >= RUNS_PER_CELL * cells ? "uncovered" : "partial";
}

export const isFailure = (v: Verdict): boolean => v === "failed" || v === "uncovered";

/** The word in the summary table. */
export const VERDICT_WORD: Record<Verdict, string> = { held: "held", failed: "FAILED", uncovered: "UNCOVERED", partial: "held*" };
