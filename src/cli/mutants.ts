import { ALL_MUTANTS, IRET_MUTANTS } from "../kernel/registry.js";
import { SMP_MUTANTS } from "../kernel/smp-variants.js";
import { COMMON_FLAGS, intFlag, parseFlags, runsFlag, seedFlag } from "./args.js";
import { runCampaign, type VariantRun } from "./campaign-run.js";
import { DEFAULT_SEED } from "./check.js";
import { toJson } from "./json.js";
import { iretJson, iretKilled, iretMatrixLines, runIretMutants } from "./mutants-iret.js";
import { type MutantPools, selectMutants } from "./mutants-select.js";
import { shrunk } from "./mutants-size.js";
import { runSmpMutants, SMP_RUNS, smpJson, smpKilled, smpMatrixLines } from "./mutants-smp.js";
import { killFailures, REPORT_FLAG, reportDir, reportFailures } from "./report-dir.js";
import { duration, table } from "./table.js";

/** A mutant is killed by a property that finds a counterexample (a coverage miss kills nothing). */
const kills = (r: VariantRun["reports"][number]): boolean => !r.ok && r.missing.length === 0;

const FLAGS = {
  ...COMMON_FLAGS, ...REPORT_FLAG,
  variant: { type: "string", multiple: true },
  arch: { type: "string", multiple: true },
  "smp-runs": { type: "string" },
} as const;

/** The built-in mutants. */
const BUILT_IN: MutantPools = { cpu: ALL_MUTANTS, smp: SMP_MUTANTS, iret: IRET_MUTANTS };

/** A single-CPU matrix cell: killed after K runs, shrunk S× to N live inputs; or survived. */
function cell(p: VariantRun["reports"][number]): string {
  const s = shrunk(p);
  const what = !kills(p) ? `survived ${p.runs} runs` : `killed after ${p.runs}${s === undefined ? "" : `, shrunk ${s.shrinks}× to ${s.size.total}`}`;
  return `${what.padEnd(30)} ${duration(p.ms).padStart(7)}`;
}

/**
 * `int3bed mutants`: the kill matrices — every single-CPU mutant × the campaign's properties,
 * then every SMP mutant (spec §7) × the multi-CPU properties — with runs-to-kill,
 * time-to-kill and the shrunk counterexample's size. Exit 1 if a mutant survives every
 * property of its section. `pools` is the built-in mutants (tests may pass others).
 */
export function mutantsCommand(argv: readonly string[], pools: MutantPools = BUILT_IN): number {
  const f = parseFlags("mutants", argv, FLAGS);
  const report = reportDir(f.report);
  const runs = runsFlag(f.runs);
  const smpRuns = intFlag("--smp-runs", f["smp-runs"], 1, "a positive integer") ?? SMP_RUNS;
  const seed = seedFlag(f.seed, DEFAULT_SEED);
  const sel = selectMutants(pools, f.variant ?? [], f.arch ?? []);
  const t0 = performance.now();
  const results = sel.cpu.map((m) => runCampaign(m, { runs, seed }));
  const tI = performance.now();
  const iret = runIretMutants(sel.iret ?? [], { seed, ...(runs === undefined ? {} : { runs }) });
  const iretMs = performance.now() - tI;
  const ms = tI - t0;
  const t1 = performance.now();
  const smp = runSmpMutants(sel.smp, { runs: smpRuns, seed });
  const smpMs = performance.now() - t1;
  const survivors = results.filter((r) => !r.reports.some(kills));
  const smpSurvivors = smp.filter((r) => !smpKilled(r));
  const iretSurvivors = iret.filter((r) => !iretKilled(r));
  const ok = survivors.length === 0 && smpSurvivors.length === 0 && iretSurvivors.length === 0;
  if (f.json === true) {
    console.log(toJson({
      command: "mutants", seed, runs: runs ?? null, ok, ms: Math.round(ms + iretMs + smpMs),
      results: results.map((r) => ({
        mutant: r.variant.name, mutantOf: r.variant.mutantOf ?? null, breaks: r.variant.breaks ?? null,
        killed: r.reports.some(kills),
        properties: r.reports.map((p) => {
          const s = shrunk(p);
          return {
            property: p.property, killed: kills(p), runs: p.runs, ms: p.ms, path: p.path ?? null,
            shrinks: s?.shrinks ?? null, size: s?.size.total ?? null, sizeParts: s?.size ?? null, detail: p.detail ?? null,
          };
        }),
      })),
      smp: sel.smp.length === 0 ? null : smpJson(smp, smpRuns, smpMs),
      iret: iret.length === 0 ? null : iretJson(iret, iretMs),
    }));
  } else {
    const out = [`int3bed mutants  seed ${seed}`];
    if (results.length > 0) {
      const props = results[0]?.reports.map((r) => r.property) ?? [];
      const lines = table([["mutant", ...props], ...results.map((r) => [r.variant.name, ...r.reports.map(cell)])]);
      out.push("", `Single-CPU mutants × campaign properties  (runs per property: ${runs ?? "default (max(300, 16 per coverage cell))"}; ` +
        "shrunk K× to N: K shrink steps, N inputs the shrunk case still needs — non-zero registers, set flags, non-zero stack bytes)", "", lines[0]);
      results.forEach((r, i) => out.push(lines[i + 1], `    breaks: ${r.variant.breaks ?? "?"}`));
      out.push("", `${results.length - survivors.length} of ${results.length} mutants killed in ${duration(ms)}` +
        (survivors.length === 0 ? "" : `; SURVIVED both properties: ${survivors.map((r) => r.variant.name).join(", ")}`));
    }
    if (iret.length > 0) out.push("", ...iretMatrixLines(iret, runs, iretMs));
    if (smp.length > 0) out.push("", ...smpMatrixLines(smp, smpRuns, smpMs));
    const n = results.length + iret.length + smp.length;
    out.push("", ok ? `all ${n} mutants killed in ${duration(ms + iretMs + smpMs)}` : `${survivors.length + iretSurvivors.length + smpSurvivors.length} of ${n} mutants SURVIVED`);
    for (const l of out) console.log(l);
  }
  if (report !== undefined) reportFailures(report, "mutants", seed, sel.cpu.map((m) => m.name), killFailures(results, seed), f.json === true);
  return ok ? 0 : 1;
}
