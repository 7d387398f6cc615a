import fc from "fast-check";
import { emuCase } from "../arbitraries/emulation.js";
import { UsageError } from "../errors.js";
import { ALL_MUTANTS, ALL_VARIANTS } from "../kernel/registry.js";
import { PATCH_KINDS, type PatchKind, type Variant } from "../kernel/variant.js";
import { type EmuCase, prepare, realBytes, runEmuCase } from "../oracle/emulation.js";
import { gasText, hex, hexBytes } from "../report/gas.js";
import { type StackPicture, stackPicture } from "../report/picture.js";
import { phaseText } from "../report/text.js";
import { type CaseTrace, type PhaseName, type StepRecord, stopLine, traceCase } from "../report/trace.js";
import { COMMON_FLAGS, intFlag, parseFlags, seedFlag } from "./args.js";
import { toJson } from "./json.js";

/** What `explain` shows when not told otherwise. */
export const EXPLAIN_DEFAULTS = { variant: "x86_64/v5.6", opcode: "call" as PatchKind, seed: 1 } as const;

const EXPLAIN_FLAGS = {
  seed: COMMON_FLAGS.seed,
  json: COMMON_FLAGS.json,
  variant: { type: "string" },
  opcode: { type: "string" },
  "sp-offset": { type: "string" },
} as const;

/**
 * `int3bed explain`: one case, instruction by instruction — the real run, then the emulated
 * run with the stack diagram at each phase point — and whether the two end equal.
 */
export function explainCommand(argv: readonly string[]): number {
  const f = parseFlags("explain", argv, EXPLAIN_FLAGS);
  const v = pickVariant(f.variant ?? EXPLAIN_DEFAULTS.variant);
  const kind = pickKind(v, f.opcode ?? EXPLAIN_DEFAULTS.opcode);
  const seed = seedFlag(f.seed, EXPLAIN_DEFAULTS.seed);
  const b = prepare(v);
  const spOffset = intFlag("--sp-offset", f["sp-offset"], 256, `a stack offset in 256..${b.k.L.threadSize - 64}`);
  if (spOffset !== undefined && spOffset > b.k.L.threadSize - 64) throw new UsageError(`--sp-offset takes a stack offset in 256..${b.k.L.threadSize - 64}, got '${f["sp-offset"]}'`);
  const sampled = fc.sample(emuCase(b.k.L, [kind]), { seed, numRuns: 1 })[0];
  // kernel stacks are word-aligned: the seed's stack pointer is rounded down to a word unless --sp-offset says otherwise
  const c: EmuCase = { ...sampled, spOffset: spOffset ?? sampled.spOffset - (sampled.spOffset % b.k.L.word) };
  const result = runEmuCase(b, c);
  const t = traceCase(b, c, { steps: true });
  const picture = stackPicture(t);
  if (f.json === true) {
    console.log(toJson({
      command: "explain", variant: v.name, opcode: kind, seed, case: c, target: t.target, R: t.R, equal: result.equal,
      real: { stop: stopLine(t.real.stop), steps: t.real.steps },
      emulated: { stop: stopLine(t.emulated.stop), steps: t.emulated.steps },
      phases: picture.phases, missing: picture.missing,
      differences: { registers: result.diff.registers, memory: result.diff.memory.map((d) => ({ addr: d.addr, real: d.a, emulated: d.b })) },
    }));
  } else {
    const diffs = [
      ...result.diff.registers.map((d) => `${d.name} ${hex(d.a)} ≠ ${hex(d.b)}`),
      ...(result.diff.memory.length === 0 ? [] : [`${result.diff.memory.length} memory run${result.diff.memory.length === 1 ? "" : "s"} (first at ${hex(result.diff.memory[0].addr)})`]),
      ...(result.realEvents.length === result.emulatedEvents.length ? [] : [`traced calls: real ${result.realEvents.length}, emulated ${result.emulatedEvents.length}`]),
    ];
    for (const l of explainText(t, picture, seed, result.equal, diffs)) console.log(l);
  }
  return 0;
}

function pickVariant(name: string): Variant {
  const all = [...ALL_VARIANTS, ...ALL_MUTANTS];
  const v = all.find((x) => x.name === name);
  if (v === undefined) throw new UsageError(`no variant '${name}'; known: ${all.map((x) => x.name).join(", ")}`);
  return v;
}

/** The opcode must be one the variant emulates (a variant that emulates nothing: call, to show why). */
function pickKind(v: Variant, raw: string): PatchKind {
  if (!(PATCH_KINDS as readonly string[]).includes(raw)) throw new UsageError(`unknown --opcode '${raw}'; valid: ${PATCH_KINDS.join(", ")}`);
  const kind = raw as PatchKind;
  const allowed = v.emulates.length === 0 ? ["call"] : v.emulates;
  if (!allowed.includes(kind)) throw new UsageError(`${v.name} does not emulate ${kind}; it emulates: ${allowed.join(", ")}`);
  return kind;
}

/** The walk-through as text lines. */
export function explainText(t: CaseTrace, pic: StackPicture, seed: number, equal: boolean, regDiffs: readonly string[]): string[] {
  const c = t.case;
  const spName = t.bits === 64 ? "rsp" : "esp";
  const out = [
    `int3bed explain  ${t.variant.name}  ${c.kind}  seed ${seed}`,
    `  ${t.variant.summary}`,
    `  the instruction being installed at X: ${hexBytes(realBytes(c, t.target))}   ${gasText(t.bits, c.site, realBytes(c, t.target))}`,
    `  site X=${hex(c.site)}  target=${hex(t.target)}  interrupted ${spName} R=${hex(t.R)} (${c.stack} stack +${hex(c.spOffset)}, R mod 16 = ${Number(t.R % 16n)})`,
    "",
    "real run: the instruction itself at X",
    ...stepsText(t.real.steps, t, undefined),
    `  stopped: ${stopLine(t.real.stop)}`,
    "",
    "emulated run: int3 at X, the site in transition — delivery, entry stub, handler, exit, return",
    ...stepsText(t.emulated.steps, t, pic),
    `  stopped: ${stopLine(t.emulated.stop)}`,
  ];
  for (const m of pic.missing) out.push(`  (no diagram ${m.phase}: ${m.why})`);
  out.push("", equal
    ? "result: the two runs end equal (registers, flags, live stack and memory, traced calls): emulated ≡ real"
    : `result: the two runs end DIFFERENT: ${regDiffs.length > 0 ? regDiffs.join(", ") : "the kernel's events differ"}`);
  return out;
}

function stepsText(steps: readonly StepRecord[], t: CaseTrace, pic: StackPicture | undefined): string[] {
  const out: string[] = [];
  const shown = new Set<PhaseName>();
  const bytesWidth = 3 * Math.min(10, Math.max(1, ...steps.map((s) => s.bytes.length)));
  for (const s of steps) {
    const bytes = s.host !== undefined ? "" : hexBytes(s.bytes);
    out.push(`  ${String(s.index).padStart(3)}  ${hex(s.addr)}  ${bytes.padEnd(bytesWidth)}  ${s.text}`);
    const regs = s.regs.filter((r) => !(r.name === "rip" || r.name === "eip") || r.after !== s.addr + BigInt(s.bytes.length));
    if (regs.length > 0) out.push(`         ${regs.map((r) => `${r.name} ${hex(r.before)} → ${hex(r.after)}`).join(", ")}`);
    for (const w of s.writes) out.push(`         wrote ${w.size} byte${w.size === 1 ? "" : "s"} at ${hex(w.addr)}${offsetFromR(t, w.addr)}: ${w.value < 0n ? "?" : hex(w.value)}`);
    for (const e of s.events) out.push(`         ${e}`);
    if (s.phase !== undefined && pic !== undefined) { out.push(...phaseBlock(pic, s.phase)); shown.add(s.phase); }
  }
  // phases taken at the end of the run, or at a return instruction that faulted
  if (pic !== undefined) for (const d of pic.phases) if (!shown.has(d.phase)) out.push(...phaseBlock(pic, d.phase));
  return out;
}

function phaseBlock(pic: StackPicture, phase: PhaseName): string[] {
  const d = pic.phases.find((p) => p.phase === phase);
  return d === undefined ? [] : phaseText(d, pic.bits, "       ");
}

function offsetFromR(t: CaseTrace, a: bigint): string {
  const d = a - t.R;
  if (d < -4096n || d > 4096n) return "";
  return d === 0n ? " (R)" : d < 0n ? ` (R−${hex(-d)})` : ` (R+${hex(d)})`;
}
