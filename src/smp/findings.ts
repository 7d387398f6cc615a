import { pokeGlobals } from "../kernel/text-poke-batch.js";
import type { SiteAccounting } from "./tracer-sites.js";
import type { TracerSim } from "./tracer.js";

/**
 * What went wrong in one multi-CPU run, by kind — each SMP property judges the kinds it is
 * about (see smp-properties.ts); `failure` is the first of them, in this order.
 */
export interface SmpFindings {
  /** A site execution that was neither the old nor the new instruction nor an exact emulation. */
  readonly site?: string;
  /** A handler used a patch descriptor after its patcher returned (pokeGlobals' violations). */
  readonly descriptor?: string;
  /** A CPU oopsed (die): an int3 nobody claimed, a NULL dereference in a handler, … */
  readonly oops?: string;
  /** The run ended by the step bound rather than finishing. */
  readonly unfinished?: string;
}

/** The findings of a run that ended for `reason` ("until": it finished). */
export function smpFindings(sim: TracerSim, acct: SiteAccounting | undefined, reason: string): SmpFindings {
  const out: { site?: string; descriptor?: string; oops?: string; unfinished?: string } = {};
  if (acct !== undefined && acct.failures.length > 0) {
    const f = acct.failures[0];
    out.site = `${f.outcome} on CPU ${f.cpu} at step ${f.step}: ${f.detail}`;
  }
  const viol = pokeGlobals(sim.k).violations;
  if (viol.length > 0) out.descriptor = viol[0];
  const d = sim.died;
  if (d !== undefined && d.kind === "die") out.oops = `oops: ${d.what} at 0x${d.ip.toString(16)}`;
  if (reason !== "until") out.unfinished = `the run did not finish: ${reason}`;
  return out;
}

/** The first finding, or undefined when the run is fine. */
export function firstFinding(f: SmpFindings): string | undefined {
  return f.site ?? f.descriptor ?? f.oops ?? f.unfinished;
}
