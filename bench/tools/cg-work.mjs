// The work cg-count.sh measures: N emulated-vs-real CALL checks (x86_64/v5.6 or x86_32/v5.6) after a
// 20,000-check warm-up, from the same 2,000 seeded cases as bench/check.ts.
//   node bench/tools/cg-work.mjs <root> check64|check32 N
import { resolve } from "node:path";
import { pathToFileURL } from "node:url";
const root = pathToFileURL(resolve(process.argv[2])).href, what = process.argv[3], N = Number(process.argv[4]);
const fc = (await import(root + "/node_modules/fast-check/lib/fast-check.js")).default;
const { emuCase } = await import(root + "/dist/src/arbitraries/emulation.js");
const { variantByName } = await import(root + "/dist/src/kernel/registry.js");
const { prepare, runEmuCase } = await import(root + "/dist/src/oracle/emulation.js");
const bits = what === "check32" ? 32 : 64;
const b = prepare(variantByName(bits === 64 ? "x86_64/v5.6" : "x86_32/v5.6"));
const cases = fc.sample(emuCase(b.k.L, ["call"]), { numRuns: 2000, seed: 7 });
for (let i = 0; i < 20000; i++) runEmuCase(b, cases[i % cases.length]); // warm-up: JIT compiles done before the measured window
for (let i = 0; i < N; i++) runEmuCase(b, cases[i % cases.length]);
