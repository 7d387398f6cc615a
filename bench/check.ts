import fc from "fast-check";
import { emuCase } from "../src/arbitraries/emulation.js";
import { variantByName } from "../src/kernel/registry.js";
import { prepare, runEmuCase } from "../src/oracle/emulation.js";
import { rateFor, report } from "./harness.js";
import { nativePrograms, type Outcome, reportNative } from "./native.js";

/** Timed rounds per width, each of the check and (when it runs here) of the native anchor. */
const ROUNDS = 5;
/** Seconds per round (the native program's rounds are ~0.25 s too). */
const ROUND_S = 0.25;

/**
 * `check.call.64` / `check.call.32`: checks per second of "real CALL + emulated CALL through
 * the whole trap path (delivery, entry stub, do_int3, int3_emulate_call, exit, IRET) + the
 * callee + diff", from seeded random states generated before timing (no fast-check in the
 * loop; the same arbitraries as the properties: random sites, targets, stacks). Each check
 * is runEmuCase as the properties run it — one prepared machine, undone through its write
 * journal, memory compared where either run wrote.
 *
 * Side by side with the native SIGTRAP anchor (bench/native.ts), round for round: after a
 * warm-up, ROUNDS times one native round then one check round of the same length, so that
 * both see the same spells of this VM's swinging speed. Each figure is its best round (as
 * every figure here: the round least disturbed by the machine); `vsNative` is their ratio,
 * `pairedMedian` the median of the rounds' own ratios (native round r against check round r).
 */
export function benchCheck(): void {
  const natives = nativePrograms();
  for (const [bits, name] of [["64", "x86_64/v5.6"], ["32", "x86_32/v5.6"]] as const) {
    const b = prepare(variantByName(name));
    const cases = fc.sample(emuCase(b.k.L, ["call"]), { numRuns: 2000, seed: 7 });
    let i = 0;
    const batch = (): number => {
      for (let n = 0; n < 200; n++) {
        if (!runEmuCase(b, cases[i++ % cases.length]).equal) throw new Error(`${name}: a check failed`);
      }
      return 200;
    };
    rateFor(batch, 0.3); // warm-up: the JIT's compiles done before the timed rounds
    const nat = natives[bits];
    let native: Outcome = "round" in nat ? { rate: 0 } : nat;
    let best = 0;
    const pairs: number[] = [];
    for (let r = 0; r < ROUNDS; r++) {
      let n: number | undefined;
      if ("round" in nat && "rate" in native) {
        const o = nat.round();
        if ("rate" in o) { n = o.rate; native = { rate: Math.max(native.rate, o.rate) }; } else native = o;
      }
      const c = rateFor(batch, ROUND_S);
      best = Math.max(best, c);
      if (n !== undefined) pairs.push(c / n);
    }
    reportNative(bits, native);
    const extra = "rate" in native
      ? { variant: name, vsNative: round2(best / native.rate), pairedMedian: round2(median(pairs)), rounds: ROUNDS }
      : { variant: name, rounds: ROUNDS };
    report(`check.call.${bits}`, best, "checks/s", extra);
  }
}

function median(x: readonly number[]): number {
  const s = [...x].sort((a, b) => a - b);
  return s.length % 2 === 1 ? s[s.length >> 1] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

const round2 = (v: number): number => Number(v.toFixed(2));

