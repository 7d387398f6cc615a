import fc from "fast-check";
import { roundTripCase } from "../arbitraries/roundtrip.js";
import { runRoundTrip } from "../oracle/roundtrip.js";
import { COMMON_FLAGS, parseFlags, runsFlag, seedFlag } from "./args.js";
import { jsonReplacer, toJson } from "./json.js";

interface Outcome { mode: string; runs: number; ok: boolean; seed: number; ms: number; counterexample?: string; replay?: string }

function machineCheck(runs: number, seed: number): Outcome[] {
  const out: Outcome[] = [];
  for (const bits of [64, 32] as const) {
    const t0 = performance.now();
    const r = fc.check(fc.property(roundTripCase(bits), (k) => runRoundTrip(k).ok), { numRuns: runs, seed });
    const o: Outcome = { mode: `x86_${bits === 64 ? "64" : "32"}`, runs: r.numRuns, ok: !r.failed, seed, ms: Math.round(performance.now() - t0) };
    if (r.failed && r.counterexample) {
      const k = r.counterexample[0];
      const res = runRoundTrip(k);
      o.counterexample = `${JSON.stringify(k, jsonReplacer)}\nstop: ${res.run.reason}\n` + res.diff.registers.map((d) => `  ${d.name}: expected 0x${d.a.toString(16)} got 0x${d.b.toString(16)}`).join("\n");
      o.replay = `int3bed machine-check --seed ${seed} --runs ${runs}  (fast-check path ${r.counterexamplePath})`;
    }
    out.push(o);
  }
  return out;
}

/**
 * `int3bed machine-check`: the machine's own campaign — exception delivery followed by IRET
 * on an untouched frame returns to exactly the interrupted state.
 */
export function machineCheckCommand(argv: readonly string[]): number {
  const f = parseFlags("machine-check", argv, COMMON_FLAGS);
  const runs = runsFlag(f.runs) ?? 2000;
  const seed = seedFlag(f.seed, Date.now() % 2 ** 31);
  const res = machineCheck(runs, seed);
  if (f.json === true) console.log(toJson({ command: "machine-check", seed, results: res }));
  else {
    console.log(`machine-check  seed ${seed}`);
    console.log("property                      mode     runs  result  time");
    for (const r of res) {
      console.log(`delivery+IRET round trip      ${r.mode.padEnd(8)} ${String(r.runs).padStart(5)}  ${r.ok ? "held  " : "FAILED"}  ${r.ms} ms`);
      if (!r.ok) console.log(`counterexample:\n${r.counterexample}\nreplay: ${r.replay}`);
    }
  }
  return res.every((r) => r.ok) ? 0 : 1;
}
