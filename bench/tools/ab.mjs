// Interleaved wall-clock A/B of check throughput in one process (the VM is noisy: compare, don't quote):
//   node bench/tools/ab.mjs <rootA> <rootB> [64|32] [rounds=6]
import { resolve } from "node:path";
import { pathToFileURL } from "node:url";
const [A, B] = [process.argv[2], process.argv[3]].map((r) => pathToFileURL(resolve(r)).href), bits = Number(process.argv[4] ?? 64), rounds = Number(process.argv[5] ?? 6);
async function setup(root) {
  const fc = (await import(root + "/node_modules/fast-check/lib/fast-check.js")).default;
  const { emuCase } = await import(root + "/dist/src/arbitraries/emulation.js");
  const { variantByName } = await import(root + "/dist/src/kernel/registry.js");
  const { prepare, runEmuCase } = await import(root + "/dist/src/oracle/emulation.js");
  const b = prepare(variantByName(bits === 64 ? "x86_64/v5.6" : "x86_32/v5.6"));
  const cases = fc.sample(emuCase(b.k.L, ["call"]), { numRuns: 2000, seed: 7 });
  let i = 0;
  return () => { const t0 = performance.now(); let n = 0; while (performance.now() - t0 < 1500) { for (let k = 0; k < 200; k++) if (!runEmuCase(b, cases[i++ % cases.length]).equal) throw new Error("fail"); n += 200; } return n / ((performance.now() - t0) / 1000); };
}
const fa = await setup(A), fb = await setup(B); fa(); fb();
const ra = [], rb = [];
for (let r = 0; r < rounds; r++) { ra.push(fa()); rb.push(fb()); }
const med = (x) => x.slice().sort((p, q) => p - q)[x.length >> 1];
console.log(JSON.stringify({ bits, A: Math.round(med(ra)), B: Math.round(med(rb)), ratioBoverA: Number((med(rb) / med(ra)).toFixed(3)) }));
