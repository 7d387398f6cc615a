import { CONDITION_NAMES, F } from "../machine/flags.js";
import { REG_NAMES_32, REG_NAMES_64 } from "../machine/cpu.js";
import type { RunResult } from "../machine/events.js";
import type { KernelEvent } from "../kernel/kernel.js";
import type { Variant } from "../kernel/variant.js";
import { alignClass, type PropertyReport } from "../oracle/campaign.js";
import { type Bench, type EmuCase, type EmuResult, prepare, realBytes, runEmuCase } from "../oracle/emulation.js";
import type { ReportEntry } from "../report/html.js";
import { type StackPicture, stackPicture } from "../report/picture.js";
import { pictureText } from "../report/text.js";
import { traceCase } from "../report/trace.js";
import { disassembleAt, hexBytes } from "./disasm.js";
import { symbolizer } from "./symbols.js";
import { table } from "./table.js";

/** A register that ends differently in the two runs, with what each value points at. */
export interface RegisterMismatch {
  readonly name: string;
  readonly real: bigint;
  readonly emulated: bigint;
  readonly realIs: string;
  readonly emulatedIs: string;
}

/** A failed property, explained for a kernel developer: what ran, how it ended, how to replay. */
export interface Failure {
  readonly variant: string;
  readonly summary: string;
  readonly property: PropertyReport["property"];
  /** Runs until the first failure (before shrinking). */
  readonly runs: number;
  /** The patched instruction, disassembled at the site in GAS syntax. */
  readonly site?: string;
  /** The shrunk case in one line. */
  readonly case?: string;
  readonly realStop?: string;
  readonly emulatedStop?: string;
  readonly registers: readonly RegisterMismatch[];
  readonly memory?: string;
  readonly events?: string;
  readonly detail?: string;
  readonly replay: string;
  /** The stack at each phase of the emulated run (delivery, pt_regs, handler, resume point). */
  readonly stack?: StackPicture;
}

/** Re-runs the shrunk counterexample both ways on a fresh boot and collects the picture. */
export function explainFailure(v: Variant, r: PropertyReport, replay: string): Failure {
  const base = { variant: v.name, summary: v.summary ?? "", property: r.property, runs: r.runs, registers: [], detail: r.detail, replay };
  const c = r.counterexample;
  if (c === undefined) return base;
  let b: Bench, res: EmuResult;
  try {
    b = prepare(v);
    res = runEmuCase(b, c);
  } catch (e) {
    return { ...base, detail: `${r.detail ?? ""}; re-running the case threw ${e instanceof Error ? `${e.name}: ${e.message}` : String(e)}` };
  }
  let stack: StackPicture | undefined;
  try {
    stack = stackPicture(traceCase(b, c));
  } catch {
    stack = undefined; // the diagrams are a picture of the failure, never a second failure
  }
  const sym = symbolizer(b.k, c, res.target);
  const annotate = (name: string, x: bigint): string => (/flags$/.test(name) ? flagNames(Number(x)) : sym(x));
  return {
    ...base,
    site: disassembleAt(v.bits, c.site, realBytes(c, res.target)),
    case: caseLine(v, c, res.target, b.k.L.stack, b.k.L.irqStack),
    realStop: stopLine(res.real),
    emulatedStop: stopLine(res.emulated),
    registers: res.diff.registers.map((d) => ({ name: d.name, real: d.a, emulated: d.b, realIs: annotate(d.name, d.a), emulatedIs: annotate(d.name, d.b) })),
    memory: res.diff.memory.length === 0 ? "equal"
      : `${res.diff.memory.length} differing byte run${res.diff.memory.length === 1 ? "" : "s"}, first at 0x${res.diff.memory[0].addr.toString(16)} ${sym(res.diff.memory[0].addr)}`.trimEnd(),
    events: eventsLine(res.realEvents, res.emulatedEvents),
    ...(stack === undefined ? {} : { stack }),
  };
}

/** The failure as indented text lines. */
export function formatFailure(f: Failure): string[] {
  const out = [`FAILED  ${f.property}  ${f.variant}${f.summary ? ` (${f.summary})` : ""}`, `  failed after ${f.runs} run${f.runs === 1 ? "" : "s"}; the case below is shrunk`];
  const line = (label: string, text: string | undefined): void => { if (text !== undefined) out.push(`  ${label.padEnd(15)}${text}`); };
  line("site", f.site);
  line("case", f.case);
  line("real run", f.realStop);
  line("emulated run", f.emulatedStop);
  if (f.site !== undefined) {
    if (f.registers.length === 0) line("registers", "equal");
    else {
      line("registers", "that differ (real ≠ emulated):");
      const hex = (x: bigint): string => `0x${x.toString(16)}`;
      const rows = f.registers.map((d) => [d.name, `${hex(d.real)} ${d.realIs}`.trimEnd(), "≠", `${hex(d.emulated)} ${d.emulatedIs}`.trimEnd()]);
      for (const r of table(rows)) out.push(`    ${r}`);
    }
  }
  line("memory", f.memory);
  line("kernel events", f.events);
  // the equivalence's detail repeats the lines above; the invariants' says what was violated
  if (f.site === undefined || f.property !== "emulated ≡ real") line("why", f.detail);
  if (f.stack !== undefined) {
    line("stack", "at each phase of the emulated run (high addresses on top; * changed since the previous phase):");
    out.push(...pictureText(f.stack, "    "));
  }
  line("replay", f.replay);
  return out;
}

/** The failure as an entry of the HTML report (--report DIR). */
export function failureEntry(f: Failure): ReportEntry {
  const hex = (x: bigint): string => `0x${x.toString(16)}`;
  const fields: [string, string][] = [["variant", `${f.variant}${f.summary ? ` (${f.summary})` : ""}`], ["property", f.property], ["replay", f.replay]];
  const add = (label: string, text: string | undefined): void => { if (text !== undefined) fields.push([label, text]); };
  add("runs to fail", String(f.runs));
  add("shrunk case", f.case);
  add("site", f.site);
  add("real run", f.realStop);
  add("emulated run", f.emulatedStop);
  add("memory", f.memory);
  add("kernel events", f.events);
  add("why", f.detail);
  return {
    heading: `FAILED  ${f.property}  ${f.variant}`,
    fields,
    registers: f.registers.map((d) => [d.name, `${hex(d.real)} ${d.realIs}`.trimEnd(), `${hex(d.emulated)} ${d.emulatedIs}`.trimEnd()] as const),
    ...(f.stack === undefined ? {} : { stack: f.stack }),
  };
}

function stopLine(r: RunResult): string {
  const ev = r.event === undefined ? "" : `: ${r.event.name}${r.event.errorCode === undefined ? "" : `(0x${r.event.errorCode.toString(16)})`} at 0x${r.event.ip.toString(16)}`;
  return `${r.reason}${r.detail === undefined ? "" : ` (${r.detail})`}${ev} after ${r.steps} step${r.steps === 1 ? "" : "s"}`;
}

function caseLine(v: Variant, c: EmuCase, target: bigint, task: bigint, irq: bigint): string {
  const hex = (x: bigint | number): string => `0x${x.toString(16)}`;
  const names = v.bits === 64 ? REG_NAMES_64 : REG_NAMES_32;
  const regs = names.map((n, i) => [n, c.regs[i] ?? 0n] as const).filter(([, x], i) => i !== 4 && x !== 0n);
  const jcc = c.kind === "jcc8" || c.kind === "jcc32";
  const nop = c.kind === "nop2" || c.kind === "nop5";
  const sp = (c.stack === "task" ? task : irq) + BigInt(c.spOffset);
  return [
    jcc ? `${c.kind} j${CONDITION_NAMES[c.cc]}` : c.kind,
    `site=${hex(c.site)}`,
    ...(nop ? [] : [`target=${hex(target)}`]),
    ...(c.trampoline === true ? ["trampoline"] : []),
    `sp=${c.stack}+${hex(c.spOffset)}=${hex(sp)} (${alignClass(v.bits, c.spOffset)})`,
    `flags=${hex(c.flags)}${c.flags === 0 ? "" : ` ${flagNames(c.flags)}`}`,
    `IF=${c.ifOn ? 1 : 0}`,
    regs.length === 0 ? "regs=0" : `regs: ${regs.map(([n, x]) => `${n}=${hex(x)}`).join(" ")}`,
    `stack bytes=[${hexBytes([...c.stackBytes])}]`,
  ].join(" ");
}

const FLAG_NAMES = Object.entries(F).filter(([n]) => n !== "IOPL");

function flagNames(x: number): string {
  const set = FLAG_NAMES.filter(([, bit]) => (x & bit) !== 0).map(([n]) => n);
  return set.length === 0 ? "" : `<${set.join(" ")}>`;
}

function eventLine(e: KernelEvent): string {
  const hex = (x: bigint): string => `0x${x.toString(16)}`;
  switch (e.kind) {
    case "traced": return `traced(ip=${hex(e.ip)}, parent=${hex(e.parentIp)})`;
    case "sigtrap": return `SIGTRAP(ip=${hex(e.ip)})`;
    case "die": return `die(${e.what})`;
    case "signal": return `${e.signal}(${e.what}, ip=${hex(e.ip)})`;
    case "warn": return `WARN(${e.what})`;
  }
}

function eventsLine(real: readonly KernelEvent[], emulated: readonly KernelEvent[]): string | undefined {
  const a = real.map(eventLine).join(", ") || "none", b = emulated.map(eventLine).join(", ") || "none";
  return a === b ? undefined : `real: ${a}; emulated: ${b}`;
}
