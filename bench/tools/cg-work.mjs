// The work cg-count.sh measures: N emulated-vs-real CALL checks (x86_64/v5.6 or x86_32/v5.6) after a
// 20,000-check warm-up, from the same 2,000 seeded cases as bench/check.ts.
//   node bench/tools/cg-work.mjs <root> check64|check32 N [upto]
// upto (default full): how much of a check runs, each mode including the ones before it and the undo
// of what it wrote (the next case's reset) — reset+layCase "layout", + the real run "real", + realDone
// and armSite "arm", + the emulated run and emulatedDone "emu", runEmuCase itself "full" (+ diff and
// the result). Differences between modes give each phase's host instructions.
import { resolve } from "node:path";
import { pathToFileURL } from "node:url";
const root = pathToFileURL(resolve(process.argv[2])).href, what = process.argv[3], N = Number(process.argv[4]);
const fc = (await import(root + "/node_modules/fast-check/lib/fast-check.js")).default;
const { emuCase } = await import(root + "/dist/src/arbitraries/emulation.js");
const { variantByName } = await import(root + "/dist/src/kernel/registry.js");
const { prepare, runEmuCase, layCase, armSite } = await import(root + "/dist/src/oracle/emulation.js");
const { startCase } = await import(root + "/dist/src/oracle/engine.js");
const bits = what === "check32" ? 32 : 64;
const b = prepare(variantByName(bits === 64 ? "x86_64/v5.6" : "x86_32/v5.6"));
const cases = fc.sample(emuCase(b.k.L, ["call"]), { numRuns: 2000, seed: 7 });
const cpu = b.k.m.cpus[0], upto = process.argv[5] ?? "full";
const modes = {
  layout: (c) => { startCase(b); layCase(b, c); },
  real: (c) => { const e = startCase(b); layCase(b, c); e.laidOut(); cpu.run(500); },
  arm: (c) => { const e = startCase(b); const lc = layCase(b, c); e.laidOut(); cpu.run(500); e.realDone(); armSite(b, c, lc); },
  emu: (c) => { const e = startCase(b); const lc = layCase(b, c); e.laidOut(); cpu.run(500); e.realDone(); armSite(b, c, lc); cpu.run(500); e.emulatedDone(); },
  full: (c) => runEmuCase(b, c),
};
const f = modes[upto];
if (f === undefined) throw new Error(`upto: one of ${Object.keys(modes).join(", ")}`);
for (let i = 0; i < 20000; i++) f(cases[i % cases.length]); // warm-up: JIT compiles done before the measured window
for (let i = 0; i < N; i++) f(cases[i % cases.length]);
