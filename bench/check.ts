import fc from "fast-check";
import { emuCase } from "../src/arbitraries/emulation.js";
import { variantByName } from "../src/kernel/registry.js";
import { prepare, runEmuCase } from "../src/oracle/emulation.js";
import { report, timeIt } from "./harness.js";
import { nativeRates } from "./native.js";

/**
 * `check.call.64` / `check.call.32`: checks per second of "real CALL + emulated CALL through
 * the whole trap path (delivery, entry stub, do_int3, int3_emulate_call, exit, IRET) + the
 * callee + diff", from seeded random states generated before timing (no fast-check in the
 * loop; the same arbitraries as the properties: random sites, targets, stacks). Each check
 * is runEmuCase as the properties run it — one prepared machine, undone through its write
 * journal, memory compared where either run wrote. Printed beside the native SIGTRAP
 * anchor, with the ratio.
 */
export function benchCheck(): void {
  const native = nativeRates();
  for (const [bits, name] of [[64, "x86_64/v5.6"], [32, "x86_32/v5.6"]] as const) {
    const b = prepare(variantByName(name));
    const cases = fc.sample(emuCase(b.k.L, ["call"]), { numRuns: 2000, seed: 7 });
    let i = 0;
    const { rate } = timeIt(() => {
      for (let n = 0; n < 200; n++) {
        if (!runEmuCase(b, cases[i++ % cases.length]).equal) throw new Error(`${name}: a check failed`);
      }
      return 200;
    });
    const nat = native[bits === 64 ? "64" : "32"];
    report(`check.call.${bits}`, rate, "checks/s", nat === undefined ? { variant: name } : { variant: name, vsNative: Number((rate / nat).toFixed(2)) });
  }
}
