import { TracerSim } from "../src/smp/tracer.js";
import { roundRobinScheduler } from "../src/smp/scheduler.js";
import { report, timeIt } from "./harness.js";

const SITES = 16;
const NOP5 = [0x0f, 0x1f, 0x44, 0x00, 0x00];

/**
 * `patch.sites_per_s`: sites taken through the whole text_poke_bp batch protocol per second —
 * x86_64/v6.3 on 4 CPUs: CPU 0 flips 16 sites (nop5 ⇄ call) with text_poke_queue +
 * text_poke_finish (int3s, sync, tails, sync, first bytes, sync, refcount drop and wait) while
 * CPUs 1–3 execute a loop through those sites (taking the sync IPIs, trapping on the int3s and
 * getting the calls emulated), round robin, `sdm` fetch model.
 */
export function benchPatch(): void {
  const sim = new TracerSim({ variant: "x86_64/v6.3", cpus: 4, fetch: "sdm" });
  const callee = sim.load([0xc3]);
  const loop = sim.here;
  const code: number[] = [];
  const sites: bigint[] = [];
  for (let i = 0; i < SITES; i++) { sites.push(loop + BigInt(code.length)); code.push(...NOP5); }
  const back = -(code.length + 5);
  code.push(0xe9, back & 0xff, (back >>> 8) & 0xff, (back >>> 16) & 0xff, (back >>> 24) & 0xff);
  sim.load(code);
  for (let c = 1; c < 4; c++) sim.start(c, loop);
  const call = (at: bigint): number[] => {
    const rel = Number(BigInt.asIntN(32, callee - (at + 5n)));
    return [0xe8, rel & 0xff, (rel >>> 8) & 0xff, (rel >>> 16) & 0xff, (rel >>> 24) & 0xff];
  };
  const rr = roundRobinScheduler();
  let on = false;
  const { rate } = timeIt(() => {
    on = !on;
    const batch = sites.map((addr) => ({ addr, text: on ? call(addr) : NOP5 }));
    sim.spawnPatcher(0, sim.sk.patch(batch));
    const r = sim.run(rr, { maxSteps: 1_000_000, trace: false });
    if (r.reason !== "until" || sim.died !== undefined) throw new Error(`patch bench: ${r.reason} ${sim.died?.kind ?? ""}`);
    return SITES;
  });
  report("patch.sites_per_s", rate, "sites/s", { cpus: 4, sites_per_batch: SITES, variant: "x86_64/v6.3" });
}
