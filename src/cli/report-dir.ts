import { accessSync, constants, writeFileSync } from "node:fs";
import { join } from "node:path";
import { UsageError } from "../errors.js";
import { reportHtml } from "../report/html.js";
import type { VariantRun } from "./campaign-run.js";
import { explainFailure, failureEntry, type Failure } from "./failure.js";
import { makeDirs } from "./make-dirs.js";
import { shellQuote } from "./table.js";

/** The --report flag, for a command's flag set. */
export const REPORT_FLAG = { report: { type: "string" } } as const;

/**
 * Checks --report DIR before the campaign runs: creates the directory (and its parents) and
 * checks it is writable. A directory that cannot be made is bad usage (one line, exit 2).
 */
export function reportDir(raw: string | undefined): string | undefined {
  if (raw === undefined) return undefined;
  if (raw.trim() === "") throw new UsageError("--report takes a directory, got ''");
  try {
    makeDirs(raw);
    accessSync(raw, constants.W_OK);
  } catch (e) {
    const code = (e as { code?: unknown }).code;
    throw new UsageError(`--report: cannot create or write the directory '${raw}'${typeof code === "string" ? ` (${code})` : ""}`);
  }
  return raw;
}

/** Writes DIR/index.html: one self-contained page with every failure and its stack diagrams. Returns its path. */
export function writeReport(dir: string, title: string, meta: readonly (readonly [string, string])[], failures: readonly Failure[]): string {
  const path = join(dir, "index.html");
  writeFileSync(path, reportHtml(title, meta, failures.map(failureEntry)));
  return path;
}

/** Writes a command's report and says where, on stdout unless the output is JSON (stderr then). */
export function reportFailures(dir: string, command: string, seed: number, variants: readonly string[], failures: readonly Failure[], json: boolean): void {
  const meta: [string, string][] = [
    ["command", `int3bed ${command}`], ["seed", String(seed)], ["variants", variants.join(", ")],
    ["failures", failures.length === 0 ? "none" : String(failures.length)], ["written", new Date().toISOString()],
  ];
  const path = writeReport(dir, `int3bed ${command}: ${failures.length === 0 ? "no failures" : `${failures.length} failure${failures.length === 1 ? "" : "s"}`}`, meta, failures);
  (json ? console.error : console.log)(`report: ${path}`);
}

/** The counterexamples that killed mutants, explained as failures (for `mutants --report`). */
export function killFailures(results: readonly VariantRun[], seed: number): Failure[] {
  return results.flatMap((run) => run.reports.filter((r) => !r.ok && r.counterexample !== undefined).map((r) => {
    const replay = ["int3bed", "check", "--variant", run.variant.name, "--seed", String(seed), ...(r.path === undefined ? [] : ["--path", r.path]), "--runs", String(run.runs)];
    return explainFailure(run.variant, r, replay.map(shellQuote).join(" "));
  }));
}
