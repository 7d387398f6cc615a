import { ALL_MUTANTS } from "../kernel/registry.js";
import { COMMON_FLAGS, parseFlags, runsFlag, seedFlag } from "./args.js";
import { runCampaign, type VariantRun } from "./campaign-run.js";
import { DEFAULT_SEED } from "./check.js";
import { toJson } from "./json.js";
import { killFailures, REPORT_FLAG, reportDir, reportFailures } from "./report-dir.js";
import { duration, table } from "./table.js";

/** A mutant is killed by a property that finds a counterexample (a coverage miss kills nothing). */
const kills = (r: VariantRun["reports"][number]): boolean => !r.ok && r.missing.length === 0;

/**
 * `int3bed mutants`: the campaign on every built-in mutant and the kill matrix
 * (mutant × property → killed after K runs / survived). Exit 1 if a mutant survives both.
 */
export function mutantsCommand(argv: readonly string[]): number {
  const f = parseFlags("mutants", argv, { ...COMMON_FLAGS, ...REPORT_FLAG });
  const report = reportDir(f.report);
  const runs = runsFlag(f.runs);
  const seed = seedFlag(f.seed, DEFAULT_SEED);
  const t0 = performance.now();
  const results = ALL_MUTANTS.map((m) => runCampaign(m, { runs, seed }));
  const ms = performance.now() - t0;
  const survivors = results.filter((r) => !r.reports.some(kills));
  if (f.json === true) {
    console.log(toJson({
      command: "mutants", seed, runs: runs ?? null, ok: survivors.length === 0, ms: Math.round(ms),
      results: results.map((r) => ({
        mutant: r.variant.name, mutantOf: r.variant.mutantOf ?? null, breaks: r.variant.breaks ?? null,
        killed: r.reports.some(kills),
        properties: r.reports.map((p) => ({ property: p.property, killed: kills(p), runs: p.runs, ms: p.ms, path: p.path ?? null, detail: p.detail ?? null })),
      })),
    }));
  } else {
    const props = results[0]?.reports.map((r) => r.property) ?? [];
    const cell = (p: VariantRun["reports"][number]): string =>
      `${(kills(p) ? `killed after ${p.runs}` : `survived ${p.runs} runs`).padEnd(19)} ${duration(p.ms).padStart(7)}`;
    const body = results.map((r) => [r.variant.name, ...r.reports.map(cell)]);
    const lines = table([["mutant", ...props], ...body]);
    const out = [`int3bed mutants  seed ${seed}  runs per property: ${runs ?? "default (max(300, 16 per coverage cell))"}`, "", lines[0]];
    results.forEach((r, i) => out.push(lines[i + 1], `    breaks: ${r.variant.breaks ?? "?"}`));
    out.push("", `${results.length - survivors.length} of ${results.length} mutants killed in ${duration(ms)}` +
      (survivors.length === 0 ? "" : `; SURVIVED both properties: ${survivors.map((r) => r.variant.name).join(", ")}`));
    for (const l of out) console.log(l);
  }
  if (report !== undefined) reportFailures(report, "mutants", seed, ALL_MUTANTS.map((m) => m.name), killFailures(results, seed), f.json === true);
  return survivors.length === 0 ? 0 : 1;
}
