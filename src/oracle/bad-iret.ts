import fc from "fast-check";
import { badFrameCase, type BadFrameCase } from "../arbitraries/bad-frame.js";
import type { KernelEvent } from "../kernel/kernel.js";
import { PtRegs, SIZEOF_PT_REGS_64 } from "../kernel/pt-regs.js";
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

/**
 * How a variant's kernel fixes up a faulting IRET to user mode:
 * - "extable" (the i386 models): `_ASM_EXTABLE(.Lirq_return, iret_exc)` → do_iret_error →
 *   SIGILL("iret exception");
 * - "error_entry" (the x86-64 IDT models): error_entry recognises a #GP at
 *   `native_irq_return_iret`, fixup_bad_iret rebuilds pt_regs as if the fault came from the
 *   IRET's target → do_general_protection → SIGSEGV("general protection fault").
 */
export type IretFixupKind = "extable" | "error_entry";

/** What a bad user frame must end in, per fix-up kind: the faulting instruction's symbol and the signal. */
export const IRET_FIXUP_EXPECTS: Readonly<Record<IretFixupKind, { readonly iret: string; readonly signal: "SIGILL" | "SIGSEGV"; readonly what: string }>> = {
  extable: { iret: ".Lirq_return", signal: "SIGILL", what: "iret exception" },
  error_entry: { iret: "native_irq_return_iret", signal: "SIGSEGV", what: "general protection fault" },
};

/** The variant's IRET fix-up, or undefined when it has none (FRED's ERETU path is not modeled). */
export function iretFixupKind(b: Bench): IretFixupKind | undefined {
  const sym = b.k.sym;
  if (b.k.extable.length > 0 && sym.has(".Lirq_return")) return "extable";
  if (b.k.m.bits === 64 && sym.has("native_irq_return_iret") && sym.has(".Lerror_bad_iret")) return "error_entry";
  return undefined;
}

/** True when the variant's kernel fixes up a faulting IRET to user mode (the i386 and x86-64 IDT models). */
export function hasIretFixup(b: Bench): boolean {
  return iretFixupKind(b) !== undefined;
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
 * - a bad selector makes that IRET fault (#GP), and the fault must end in a signal for the
 *   task — never an oops. On i386, do_general_protection finds the IRET in the exception
 *   table (`.Lirq_return` → iret_exc), iret_exc builds pt_regs over the frame the IRET
 *   faulted on, and do_iret_error forces SIGILL("iret exception"). On x86-64, error_entry sees
 *   the #GP's RIP is `native_irq_return_iret`, fixup_bad_iret rebuilds pt_regs at the task
 *   stack's top from the IRET's target, and do_general_protection sees a user-mode fault:
 *   SIGSEGV("general protection fault"); there the whole pt_regs it gets is checked too — the
 *   user's registers, flags, ip after the int3, user sp, and the (bad) selectors as written.
 *   Either way the events are SIGTRAP then the signal at the user's ip with the bad selector
 *   in its frame, and the #GP was raised at the exit's IRET.
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
  const kind = iretFixupKind(b);
  const expects = IRET_FIXUP_EXPECTS[kind ?? "extable"];
  const userRegs = Array.from({ length: 16 }, (_x, i) => cpu.reg(i));
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
      const iret = k.sym.get("native_irq_return_iret");
      const fixer = kind === "error_entry" && iret !== undefined
        ? `native_irq_return_iret is ${hex(iret)}; ${die.kind === "die" && die.what === "general protection fault" ? "error_entry did not hand the fault to fixup_bad_iret" : "error_entry handed the fault to fixup_bad_iret"}`
        : `the exception table covers ${k.extable.map((e) => hex(e.insn)).join(", ")}`;
      const where = gpAt === undefined ? "" : ` (#GP at ${hex(gpAt)}; ${fixer})`;
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
      if (sig.signal !== expects.signal || sig.what !== expects.what) violations.push(`${eventText(sig)}, not ${expects.signal}(${expects.what})`);
      if (sig.ip !== site + 1n) violations.push(`the signal's frame has ip ${hex(sig.ip)}, not the user's ${hex(site + 1n)}`);
      const seen = bad.field === "cs" ? sig.cs : sig.ss;
      if (seen !== bad.selector) violations.push(`the signal's frame has ${bad.field} ${hex(seen)}, not the bad ${hex(bad.selector)}`);
      const iret = k.sym.get(expects.iret);
      if (iret === undefined || gpAt !== iret) violations.push(`#GP at ${gpAt === undefined ? "nowhere" : hex(gpAt)}, not at ${expects.iret} ${iret === undefined ? "(no such symbol)" : hex(iret)}`);
      if (ev.length !== 2) violations.push(`events: ${text}`);
      if (kind === "error_entry") violations.push(...userFrameViolations(b, userRegs, { ip: site + 1n, sp: userSp, bad }));
    }
    return { outcome, violations, events: ev, ...(gpAt === undefined ? {} : { gpAt }) };
  } finally {
    unhook();
    k.onUserSignal = undefined;
  }
}

const GPR_NAMES = ["ax", "cx", "dx", "bx", "sp", "bp", "si", "di", "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15"] as const;

/**
 * x86-64: the pt_regs do_general_protection got after fixup_bad_iret and sync_regs — at the
 * task stack's top (TSS.sp0 − sizeof(pt_regs)) — must be the user's state at the IRET's
 * target: the registers the task had at its int3, flags 0x202, ip after the int3, the user
 * sp, and cs/ss as the ptrace stop left them (the bad one included).
 */
function userFrameViolations(b: Bench, userRegs: readonly bigint[], want: { ip: bigint; sp: bigint; bad: BadFrameCase["bad"] }): string[] {
  const { k } = b;
  const L = k.L;
  const regs = new PtRegs(k.m, k.m.cpu.tss.sp[0] - BigInt(SIZEOF_PT_REGS_64));
  const out: string[] = [];
  GPR_NAMES.forEach((n, i) => {
    if (n === "sp") return;
    const v = regs.get(n);
    if (v !== userRegs[i]) out.push(`pt_regs->${n} ${hex(v)}, not the user's ${hex(userRegs[i])}`);
  });
  const cs = want.bad.field === "cs" ? want.bad.selector : L.userCs;
  const ss = want.bad.field === "ss" ? want.bad.selector : L.userSs;
  const fields: [string, bigint, bigint][] = [
    ["ip", regs.ip, want.ip], ["sp", regs.sp, want.sp], ["flags", regs.flags, 0x202n],
    ["cs", regs.get("cs") & 0xffffn, BigInt(cs)], ["ss", regs.get("ss") & 0xffffn, BigInt(ss)],
  ];
  for (const [n, v, w] of fields) if (v !== w) out.push(`pt_regs->${n} ${hex(v)}, not the user's ${hex(w)}`);
  return out.length === 0 ? out : [`the fault's pt_regs at ${hex(regs.addr)} are not the user's frame: ${out.join(", ")}`];
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
 * The bad-user-frame property over a variant whose kernel has an IRET fix-up (hasIretFixup:
 * the i386 and x86-64 IDT models); undefined for the others (FRED's ERETU fix-up is not
 * modeled).
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
