// A tracer simulator in a few lines: a 2-CPU machine running the x86_64/v5.2 kernel model,
// a traced function that CPU 1 calls in a loop, tracing enabled (and later disabled) by CPU 0
// mid-run, and the trace read back. Run it: npx tsx examples/tracer-sim.ts
import { pathToFileURL } from "node:url";
// (in your own project: `from "int3bed"`)
import { fairSchedule, seededScheduler, TracerSim, type TracedCall } from "../src/index.js";

const hex = (v: bigint): string => `0x${v.toString(16)}`;

/** How the calls in [from, to) went: by what CPU 1 fetched at the fentry site, and how often traced. */
function summary(calls: readonly TracedCall[]): string {
  const by = new Map<string, number>();
  for (const c of calls) {
    if (c.end === undefined) continue;
    const k = `${c.fetched}→traced ${c.traces}×`;
    by.set(k, (by.get(k) ?? 0) + 1);
  }
  return [...by].map(([k, n]) => `${n} ${k}`).join(", ");
}

export function tracerSimExample(seed = 1): string[] {
  const out: string[] = [];
  // Two CPUs, the v5.2 kernel model (ftrace's three phases under modifying_ftrace_code; a CPU
  // that hits the temporary int3 gets a call to ftrace_regs_caller emulated), SDM fetches.
  const sim = new TracerSim({ variant: "x86_64/v5.2", cpus: 2, fetch: "sdm" });
  // A traced function: its 5-byte fentry nop, then `inc %r12; ret`.
  const work = sim.defineTracedFunction([0x49, 0xff, 0xc4, 0xc3]);
  sim.loopCalling(1, [work]);
  const s = seededScheduler(seed);

  sim.run(s, { maxSteps: 300, until: () => false });
  out.push(`tracing off: ${sim.calls.length} calls of ${hex(work)}, ${sim.trace.length} traced`);

  // Enable tracing mid-run: CPU 0 runs ftrace_replace_code while CPU 1 keeps calling. The
  // schedule gives CPU 1 twenty steps for each step of CPU 0, so it meets the int3s.
  const n0 = sim.calls.length;
  const on = sim.enableTracing(0);
  const slowPatcher = (): number[] => Array.from({ length: 200 }, (_, i) => (i % 2 === 0 ? 153 : 0));
  sim.run(fairSchedule(slowPatcher()), { maxSteps: 100_000 });
  out.push(`enabling ran from step ${on.start} to ${on.end}: ${summary(sim.calls.slice(n0))}`);

  const n1 = sim.calls.length;
  sim.run(s, { maxSteps: 300, until: () => false });
  out.push(`tracing on: ${summary(sim.calls.slice(n1))}`);

  const off = sim.disableTracing(0);
  const n2 = sim.calls.length;
  sim.run(fairSchedule(slowPatcher()), { maxSteps: 100_000 });
  out.push(`disabling ran from step ${off.start} to ${off.end}: ${summary(sim.calls.slice(n2))}`);

  const n3 = sim.calls.length;
  sim.run(s, { maxSteps: 300, until: () => false });
  out.push(`tracing off again: ${summary(sim.calls.slice(n3))}`);

  const t = sim.trace;
  out.push(`trace: ${t.length} records; first: cpu ${t[0].cpu} ip ${hex(t[0].ip)} parent_ip ${hex(t[0].parentIp)}`);
  out.push(`IPIs taken by CPU 1: ${sim.smp.stats.ipisTaken[1]}; oops: ${sim.died === undefined ? "none" : "yes"}`);
  return out;
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  for (const line of tracerSimExample()) console.log(line);
}
