import { parseArgs } from "node:util";
import fc from "fast-check";
import { roundTripCase } from "../arbitraries/roundtrip.js";
import { runRoundTrip, type RoundTripCase } from "../oracle/roundtrip.js";
import { UsageError } from "../errors.js";

const HELP = `int3bed — a testbed for Linux x86 int3-based live patching

Usage:
  int3bed machine-check [--runs N] [--seed S] [--json]
      Property campaign on the machine itself: exception delivery followed by IRET on an
      untouched frame returns to exactly the interrupted state (32- and 64-bit, CPL 0 and 3,
      IST, INT3 and INT n, every stack alignment). Default 2000 runs per mode.
  int3bed --help

Exit codes: 0 all held, 1 a property failed, 2 bad usage.
(The kernel-model campaigns, \`int3bed check\`, come with the int3-emulation models.)`;

interface Outcome { mode: string; runs: number; ok: boolean; seed: number; ms: number; counterexample?: string; replay?: string }

function describe(k: RoundTripCase): string {
  return JSON.stringify(k, (_, v: unknown) => (typeof v === "bigint" ? "0x" + v.toString(16) : v instanceof Uint8Array ? Array.from(v) : v));
}

function machineCheck(runs: number, seed: number): Outcome[] {
  const out: Outcome[] = [];
  for (const bits of [64, 32] as const) {
    const t0 = performance.now();
    const r = fc.check(fc.property(roundTripCase(bits), (k) => runRoundTrip(k).ok), { numRuns: runs, seed });
    const o: Outcome = { mode: `x86_${bits === 64 ? "64" : "32"}`, runs: r.numRuns, ok: !r.failed, seed, ms: Math.round(performance.now() - t0) };
    if (r.failed && r.counterexample) {
      const k = r.counterexample[0];
      const res = runRoundTrip(k);
      o.counterexample = `${describe(k)}\nstop: ${res.run.reason}\n` + res.diff.registers.map((d) => `  ${d.name}: expected 0x${d.a.toString(16)} got 0x${d.b.toString(16)}`).join("\n");
      o.replay = `int3bed machine-check --seed ${seed} --runs ${runs}  (fast-check path ${r.counterexamplePath})`;
    }
    out.push(o);
  }
  return out;
}

/** Entry point: returns the exit code. */
export function main(argv: string[]): number {
  let args;
  try {
    args = parseArgs({
      args: argv, allowPositionals: true, strict: true,
      options: { runs: { type: "string" }, seed: { type: "string" }, json: { type: "boolean" }, help: { type: "boolean", short: "h" } },
    });
  } catch (e) {
    console.error(`int3bed: ${(e as Error).message}\n\n${HELP}`);
    return 2;
  }
  const { values, positionals } = args;
  if (values.help) { console.log(HELP); return 0; }
  const cmd = positionals[0] ?? "machine-check";
  try {
    if (cmd !== "machine-check" || positionals.length > 1) throw new UsageError(`unknown command '${positionals.join(" ")}'`);
    const runs = values.runs === undefined ? 2000 : Number(values.runs);
    if (!Number.isInteger(runs) || runs < 1) throw new UsageError(`--runs takes a positive integer, got '${values.runs}'`);
    const seed = values.seed === undefined ? Date.now() % 2 ** 31 : Number(values.seed);
    if (!Number.isInteger(seed)) throw new UsageError(`--seed takes an integer, got '${values.seed}'`);
    const res = machineCheck(runs, seed);
    if (values.json) console.log(JSON.stringify({ command: "machine-check", seed, results: res }));
    else {
      console.log(`machine-check  seed ${seed}`);
      console.log("property                      mode     runs  result  time");
      for (const r of res) {
        console.log(`delivery+IRET round trip      ${r.mode.padEnd(8)} ${String(r.runs).padStart(5)}  ${r.ok ? "held  " : "FAILED"}  ${r.ms} ms`);
        if (!r.ok) console.log(`counterexample:\n${r.counterexample}\nreplay: ${r.replay}`);
      }
    }
    return res.every((r) => r.ok) ? 0 : 1;
  } catch (e) {
    if (e instanceof UsageError) { console.error(`int3bed: ${e.message}\n\n${HELP}`); return 2; }
    throw e;
  }
}
