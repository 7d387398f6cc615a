// Exactness digest of the check engine: node bench/tools/exact.mjs <root> [perVariantKind=250]
// Runs seeded emulated-vs-real checks for every variant and mutant in ALL_VARIANTS/ALL_MUTANTS,
// every kind (emulated or not), and hashes verdicts, diffs, steps, stop reasons, events, icount,
// and every 50th case's three snapshots. Identical digest = identical behaviour.
import { createHash } from "node:crypto";
import { resolve } from "node:path";
import { pathToFileURL } from "node:url";
const root = pathToFileURL(resolve(process.argv[2])).href, N = Number(process.argv[3] ?? 250);
const fc = (await import(root + "/node_modules/fast-check/lib/fast-check.js")).default;
const { emuCase } = await import(root + "/dist/src/arbitraries/emulation.js");
const { ALL_VARIANTS, ALL_MUTANTS } = await import(root + "/dist/src/kernel/registry.js");
const { PATCH_KINDS } = await import(root + "/dist/src/kernel/variant.js");
const { prepare, runEmuCase } = await import(root + "/dist/src/oracle/emulation.js");
const noGen = process.env.EXACT_NO_SEGGEN === "1"; // segGen numbers are bookkeeping, not state
const j = (x) => JSON.stringify(x, (k, v) => noGen && k === "segGen" ? undefined : typeof v === "bigint" ? v.toString(16) + "n" : v instanceof Uint8Array ? Buffer.from(v).toString("hex") : v);
const all = createHash("sha256"); let checks = 0, equal = 0;
for (const v of [...ALL_VARIANTS, ...ALL_MUTANTS]) {
  const h = createHash("sha256");
  const b = prepare(v);
  for (const kind of PATCH_KINDS) {
    const cases = fc.sample(emuCase(b.k.L, [kind]), { numRuns: N, seed: 4242 });
    for (let i = 0; i < cases.length; i++) {
      const r = runEmuCase(b, cases[i]);
      checks++; if (r.equal) equal++;
      h.update(j([r.equal, r.diff, r.real, r.emulated, r.realEvents, r.emulatedEvents, r.target, b.k.m.cpu.icount]));
      if (i % 50 === 0) { h.update(j([r.before.cpus, r.afterReal.cpus, r.afterEmulated.cpus])); for (const s of [r.before, r.afterReal, r.afterEmulated]) h.update(j([...s.mem.pages.entries()].map(([k, p]) => [k, p.perm, createHash("md5").update(p.data).digest("hex")]).sort((a, b) => a[0] - b[0]))); }
    }
  }
  const d = h.digest("hex").slice(0, 16);
  all.update(v.name + d);
  if (process.env.EXACT_VERBOSE) console.log(v.name, d);
}
console.log(`checks ${checks} equal ${equal} digest ${all.digest("hex").slice(0, 24)}`);
