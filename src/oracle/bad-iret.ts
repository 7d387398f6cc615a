import fc from "fast-check";
import { badFrameCase, type BadFrameCase } from "../arbitraries/bad-frame.js";
import type { KernelEvent } from "../kernel/kernel.js";
import type { Variant } from "../kernel/variant.js";
import { Perm } from "../machine/page.js";
import { armSite, type Bench, layCase, prepare } from "./emulation.js";
import { startCase } from "./engine.js";

/** The property's name, as the mutants matrix shows it. */
export const BAD_IRET_PROPERTY = "bad user frame → signal";

/** How a bad-user-frame case ended. */
export type BadFrameOutcome = "returned" | "signalled" | "oops" | "other";

export interface BadFrameResult {
  readonly outcome: BadFrameOutcome;
  readonly violations: readonly string[];
  readonly events: readonly KernelEvent[];
  /** Where the CPU raised #GP, if it did (the faulting IRET). */
  readonly gpAt?: bigint;
}

const hex = (v: bigint | number): string => "0x" + v.toString(16);

/** True when the variant's kernel returns to user mode through an IRET its exception table covers (the i386 models). */
export function hasIretFixup(b: Bench): boolean {
  return b.k.extable.length > 0 && b.k.sym.has(".Lirq_return");
}

function eventText(e: KernelEvent): string {
  switch (e.kind) {
    case "die": return `die(${e.what}) at ${hex(e.ip)}`;
    case "signal": return `${e.signal}(${e.what}) at ${hex(e.ip)}`;
    case "sigtrap": return `SIGTRAP at ${hex(e.ip)}`;
    default: return e.kind;
  }
}

/**
 * One case: a user-mode int3 reaches do_int3's SIGTRAP; at the ptrace stop that follows, the
 * saved frame is changed as `bad` says (a 16-bit selector into pt_regs->cs or ->ss, as
 * PTRACE_SETREGS or sigreturn would); the exit path then IRETs to user mode.
 * - an unchanged frame returns to the instruction after the int3, in user mode, on the user
 *   stack, with SIGTRAP the only event;
 * - a bad selector makes that IRET fault (#GP); do_general_protection finds the IRET in the
 *   exception table (`.Lirq_return` → iret_exc), iret_exc builds pt_regs over the frame the
 *   IRET faulted on, and do_iret_error forces SIGILL on the task: the events are SIGTRAP then
 *   SIGILL("iret exception") at the user's ip with the bad selector in its frame — never an
 *   oops.
 */
export function checkBadUserFrame(b: Bench, bc: BadFrameCase): BadFrameResult {
  const { k } = b;
  const m = k.m, L = k.L, { c, bad } = bc;
  startCase(b); // the journal engine: back to the pristine machine
  const lc = layCase(b, c);
  const site = L.userText + BigInt(c.spOffset & 0xfff);
  m.map(L.userText, 0x2000, Perm.R | Perm.X | Perm.U).map(L.userStack, 0x2000, Perm.R | Perm.W | Perm.U);
  armSite(b, b.variant.sites === "ftrace" ? c : { ...c, site }, lc); // a kernel site in transition meanwhile
  m.load(site, [0xcc, 0xf4]);
  const cpu = m.cpu;
  const userSp = L.userStack + 0x1000n + BigInt(c.spOffset & 0xff);
  cpu.setCs(L.userCs);
  cpu.ss = L.userSs;
  cpu.sp = userSp;
  cpu.rip = site;
  cpu.flags = 0x202;
  let gpAt: bigint | undefined;
  const unhook = m.onException((_c, e) => { if (e.vector === 13 && gpAt === undefined) gpAt = e.ip; });
  k.onUserSignal = (regs) => {
    if (bad.field === "none") return;
    regs.setHalves(bad.field, (regs.lo32(bad.field) & ~0xffff) | bad.selector, 0); // the u16 field, __csh/__ssh kept
  };
  const violations: string[] = [];
  let outcome: BadFrameOutcome = "other";
  try {
    const r = m.run({ maxSteps: 2000, until: site + 1n });
    const ev = [...k.events];
    const text = ev.map(eventText).join(", ") || "none";
    const die = ev.find((e) => e.kind === "die");
    const sig = ev.find((e) => e.kind === "signal");
    const first = ev[0];
    if (first === undefined || first.kind !== "sigtrap" || first.ip !== site) violations.push(`the user int3 did not reach SIGTRAP first (events: ${text})`);
    if (die !== undefined) {
      outcome = "oops";
      const where = gpAt === undefined ? "" : ` (#GP at ${hex(gpAt)}; the exception table covers ${k.extable.map((e) => hex(e.insn)).join(", ")})`;
      violations.push(`oops: ${eventText(die)}${where}`);
    } else if (bad.field === "none") {
      if (r.reason === "until" && cpu.cpl === 3) outcome = "returned";
      if (r.reason !== "until") violations.push(`a good frame did not return to ${hex(site + 1n)} (run: ${r.reason} ${r.detail ?? ""}; events: ${text})`);
      else {
        if (cpu.cs !== L.userCs || cpu.ss !== L.userSs || cpu.cpl !== 3) violations.push(`returned with cs ${hex(cpu.cs)} ss ${hex(cpu.ss)}`);
        if (cpu.sp !== userSp) violations.push(`returned with sp ${hex(cpu.sp)}, not ${hex(userSp)}`);
        if (ev.length !== 1) violations.push(`events besides SIGTRAP: ${text}`);
      }
    } else if (sig === undefined || sig.kind !== "signal" || r.reason !== "stopped") {
      violations.push(`a bad ${bad.field} ${hex(bad.selector)} did not end in a signal (run: ${r.reason} ${r.detail ?? ""}; events: ${text})`);
    } else {
      outcome = "signalled";
      if (sig.signal !== "SIGILL" || sig.what !== "iret exception") violations.push(`${eventText(sig)}, not SIGILL(iret exception)`);
      if (sig.ip !== site + 1n) violations.push(`the signal's frame has ip ${hex(sig.ip)}, not the user's ${hex(site + 1n)}`);
      const seen = bad.field === "cs" ? sig.cs : sig.ss;
      if (seen !== bad.selector) violations.push(`the signal's frame has ${bad.field} ${hex(seen)}, not the bad ${hex(bad.selector)}`);
      if (gpAt !== k.addr(".Lirq_return")) violations.push(`#GP at ${gpAt === undefined ? "nowhere" : hex(gpAt)}, not at .Lirq_return ${hex(k.addr(".Lirq_return"))}`);
      if (ev.length !== 2) violations.push(`events: ${text}`);
    }
    return { outcome, violations, events: ev, ...(gpAt === undefined ? {} : { gpAt }) };
  } finally {
    unhook();
    k.onUserSignal = undefined;
  }
}

/** What one run of the property over a variant found (the shape of the campaign's reports). */
export interface BadIretReport {
  readonly variant: string;
  readonly property: typeof BAD_IRET_PROPERTY;
  readonly runs: number;
  readonly ok: boolean;
  readonly seed: number;
  readonly path?: string;
  readonly counterexample?: BadFrameCase;
  readonly detail?: string;
  readonly shrinks?: number;
  readonly ms: number;
}

export interface BadIretOptions {
  readonly runs?: number;
  readonly seed?: number;
  readonly path?: string;
  readonly bench?: Bench;
}

/** Default runs: a bad frame is a third of the cases each for cs and ss. */
export const BAD_IRET_RUNS = 100;

/**
 * The bad-user-frame property over a variant whose kernel has the IRET fix-up (hasIretFixup);
 * undefined for the others (x86-64 handles a faulting IRETQ in error_entry, not through the
 * exception table; FRED's ERETU is not modeled here).
 */
export function checkBadIret(v: Variant, o: BadIretOptions = {}): BadIretReport | undefined {
  const b = o.bench ?? prepare(v);
  if (!hasIretFixup(b)) return undefined;
  const seed = o.seed ?? 20191105;
  const runs = o.runs ?? BAD_IRET_RUNS;
  const t0 = performance.now();
  const r = fc.check(fc.property(badFrameCase(b.k.L, v.emulates), (bc) => checkBadUserFrame(b, bc).violations.length === 0),
    { numRuns: runs, seed, ...(o.path === undefined ? {} : { path: o.path }) });
  const ce = r.counterexample?.[0];
  return {
    variant: v.name, property: BAD_IRET_PROPERTY, runs: r.numRuns, ok: !r.failed, seed,
    ...(r.failed ? {
      path: r.counterexamplePath ?? undefined, shrinks: r.numShrinks,
      ...(ce === undefined ? { detail: String(r.errorInstance) } : { counterexample: ce, detail: checkBadUserFrame(b, ce).violations.join("; ") }),
    } : {}),
    ms: Math.round(performance.now() - t0),
  };
}
