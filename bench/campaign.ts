import { ALL_VARIANTS } from "../src/kernel/registry.js";
import { mergeUnits } from "../src/cli/merge-units.js";
import { runUnits } from "../src/cli/pool.js";
import { planUnits } from "../src/cli/units.js";
import { DEFAULT_SEED } from "../src/cli/check.js";
import { report } from "./harness.js";

/** Runs per property per variant here: the default campaign's shape, smaller (a few seconds per figure). */
const RUNS = 3000;

/**
 * `campaign.checks.w1` / `campaign.checks.w2`: the default campaign (every variant that
 * emulates something × both properties) end to end — planning, fast-check generation and
 * shrinking, the checks, worker start-up, merging — in checks per second, with 1 and 2
 * worker threads. One timed run each (start-up included, as a user sees it).
 */
export function benchCampaign(): void {
  const variants = ALL_VARIANTS.filter((v) => v.emulates.length > 0);
  const units = planUnits(variants.map(() => RUNS), DEFAULT_SEED);
  const source = { names: variants.map((v) => v.name), opcodes: [] };
  for (const workers of [1, 2]) {
    const t0 = performance.now();
    const merged = mergeUnits(variants, units, runUnits(units, variants, source, { workers }), DEFAULT_SEED);
    const s = (performance.now() - t0) / 1000;
    const checks = merged.reduce((n, r) => n + r.reports.reduce((m, p) => m + p.runs, 0), 0);
    if (merged.some((r) => r.reports.some((p) => !p.ok))) throw new Error("campaign bench: a property failed");
    report(`campaign.checks.w${workers}`, checks / s, "checks/s", { checks, seconds: Number(s.toFixed(2)), variants: variants.length, runsPerProperty: RUNS });
  }
}
