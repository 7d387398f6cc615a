import type { Variant } from "../kernel/variant.js";
import { BAD_IRET_PROPERTY, BAD_IRET_RUNS, checkBadIret } from "../oracle/bad-iret.js";
import { checkEspfix, describeUserSegmentsCase, ESPFIX_PROPERTY, ESPFIX_RUNS } from "../oracle/espfix.js";
import { duration, table } from "./table.js";

/** The exit-path properties, in column order. */
export const EXIT_PROPERTIES = [BAD_IRET_PROPERTY, ESPFIX_PROPERTY] as const;

/** What one exit-path property found on a mutant (undefined: it does not apply to the mutant's kernel). */
export interface ExitPathReport {
  readonly property: (typeof EXIT_PROPERTIES)[number];
  readonly runs: number;
  readonly ok: boolean;
  readonly path?: string;
  readonly shrinks?: number;
  readonly detail?: string;
  /** The shrunk counterexample in one line. */
  readonly found?: string;
  /** The counterexample as data (JSON). */
  readonly counterexample?: unknown;
  readonly ms: number;
}

/** One exit-path mutant checked with each exit-path property. */
export interface IretMutantRun {
  readonly variant: Variant;
  readonly reports: readonly (ExitPathReport | undefined)[];
  readonly ms: number;
}

const kills = (p: ExitPathReport | undefined): boolean => p !== undefined && !p.ok && p.counterexample !== undefined;
const killer = (r: IretMutantRun): ExitPathReport | undefined => r.reports.find((p): p is ExitPathReport => kills(p));
export const iretKilled = (r: IretMutantRun): boolean => r.reports.some(kills);

/**
 * Runs the exit-path properties on each exit-path mutant: the bad-user-frame property
 * (`runs` cases, default BAD_IRET_RUNS) and the user-segments/ESPFIX property (`runs`,
 * default ESPFIX_RUNS).
 */
export function runIretMutants(mutants: readonly Variant[], o: { runs?: number; seed: number }): IretMutantRun[] {
  return mutants.map((v) => {
    const t0 = performance.now();
    const bad = checkBadIret(v, { seed: o.seed, runs: o.runs ?? BAD_IRET_RUNS });
    const esp = checkEspfix(v, { seed: o.seed, runs: o.runs ?? ESPFIX_RUNS });
    const reports: (ExitPathReport | undefined)[] = [
      bad === undefined ? undefined : {
        property: BAD_IRET_PROPERTY, runs: bad.runs, ok: bad.ok, path: bad.path, shrinks: bad.shrinks, detail: bad.detail, ms: bad.ms,
        ...(bad.counterexample === undefined ? {} : {
          counterexample: bad.counterexample.bad,
          found: bad.counterexample.bad.field === "none" ? "frame unchanged" : `pt_regs->${bad.counterexample.bad.field} := 0x${bad.counterexample.bad.selector.toString(16)}`,
        }),
      },
      esp === undefined ? undefined : {
        property: ESPFIX_PROPERTY, runs: esp.runs, ok: esp.ok, path: esp.path, shrinks: esp.shrinks, detail: esp.detail, ms: esp.ms,
        ...(esp.counterexample === undefined ? {} : { counterexample: esp.counterexample, found: describeUserSegmentsCase(esp.counterexample) }),
      },
    ];
    return { variant: v, reports, ms: performance.now() - t0 };
  });
}

function cell(p: ExitPathReport | undefined): string {
  if (p === undefined) return "does not apply";
  const what = kills(p) ? `killed after ${p.runs}, shrunk ${p.shrinks ?? 0}×` : `survived ${p.runs} runs`;
  return `${what.padEnd(30)} ${duration(p.ms).padStart(7)}`;
}

/** The text section: one row per mutant, its breaks line and what the killing property found. */
export function iretMatrixLines(runs: readonly IretMutantRun[], budget: number | undefined, ms: number): string[] {
  const lines = table([["exit-path mutant", ...EXIT_PROPERTIES], ...runs.map((r) => [r.variant.name, ...r.reports.map(cell)])]);
  const out = [
    `Exit-path mutants × the exit-path properties  (runs: ${budget ?? `${BAD_IRET_RUNS} / ${ESPFIX_RUNS}`}; ${BAD_IRET_PROPERTY}: a user int3's saved cs/ss made bad before the return must end in a signal — SIGILL on i386, SIGSEGV on x86-64 — never an oops; ` +
      `${ESPFIX_PROPERTY}: an i386 task with null or based DS/ES/FS/GS and a GDT or LDT stack (ESPFIX) returns exactly, and every fault the exit takes on the way resumes its interrupted context exactly)`,
    "", lines[0],
  ];
  runs.forEach((r, i) => {
    out.push(lines[i + 1], `    breaks: ${r.variant.breaks ?? "?"}`);
    const k = killer(r) ?? r.reports.find((p) => p?.detail !== undefined);
    if (k?.detail !== undefined) out.push(`    found: ${k.found === undefined ? "" : `${k.found} → `}${k.detail}`);
  });
  const killed = runs.filter(iretKilled).length;
  out.push("", `${killed} of ${runs.length} exit-path mutants killed in ${duration(ms)}`);
  return out;
}

/** The JSON section (per mutant: the first killing property's figures, and every property's). */
export function iretJson(runs: readonly IretMutantRun[], ms: number): unknown {
  return {
    properties: EXIT_PROPERTIES, ok: runs.every(iretKilled), ms: Math.round(ms),
    results: runs.map((r) => {
      const k = killer(r);
      return {
        mutant: r.variant.name, mutantOf: r.variant.mutantOf ?? null, breaks: r.variant.breaks ?? null, killed: k !== undefined,
        property: k?.property ?? null, runs: k?.runs ?? null, shrinks: k?.shrinks ?? null, path: k?.path ?? null, detail: k?.detail ?? null,
        counterexample: k?.counterexample ?? null,
        byProperty: r.reports.map((p, i) => (p === undefined ? { property: EXIT_PROPERTIES[i], applies: false } : {
          property: p.property, applies: true, killed: kills(p), runs: p.runs, shrinks: p.shrinks ?? null, ms: p.ms, detail: p.detail ?? null,
        })),
      };
    }),
  };
}
