import { fieldOfHardwareWord, hardwareFrame, ptRegsFields, RETURN_FIELDS, returnFrame } from "./frames.js";
import { hex } from "./gas.js";
import { collapse, pointerLine, symbolOf, type Word } from "./rows.js";
import { PHASE_TITLE, type TitleFacts } from "./titles.js";
import type { CaseTrace, PhaseCapture, PhaseName } from "./trace.js";

export { symbolOf } from "./rows.js";

/** What a stack word is, for colour and for the eye. */
export type WordKind = "interrupted" | "hw" | "pt_regs" | "gap" | "pad" | "redzone" | "pushed" | "stub" | "dead" | "other";

/** One row of a stack diagram: a word, or a run of words collapsed into one row. */
export interface DiagramRow {
  readonly addr: bigint;
  /** Words in this row (more than 1: a collapsed run, no value shown). */
  readonly words: number;
  readonly value?: bigint;
  /** What the word is, e.g. ["pt_regs->ip", "gap copy of hw RIP"]. */
  readonly labels: readonly string[];
  readonly kind: WordKind;
  /** Pointers at this word: "R" (the interrupted SP), "RSP"/"ESP" (the current SP), "regs->sp". */
  readonly marks: readonly string[];
  /** Changed since the previous phase. */
  readonly changed: boolean;
  /** Something is wrong here, e.g. "the push overwrote pt_regs->ss". */
  readonly warn?: string;
  /** The real run's value where it differs from the emulated run's (resume point only). */
  readonly real?: bigint;
  /** What the value points at, e.g. "<site+0x1>", "<asm_int3+0x42>". */
  readonly points?: string;
}

/** The stack at one phase point. */
export interface PhaseDiagram {
  readonly phase: PhaseName;
  readonly title: string;
  /** The stack and instruction pointers, and the real run's where they differ. */
  readonly pointers: string;
  readonly rows: readonly DiagramRow[];
  readonly notes: readonly string[];
}

/** Stack diagrams of one case at each phase of the int3 path. */
export interface StackPicture {
  readonly variant: string;
  readonly bits: 32 | 64;
  readonly R: bigint;
  readonly phases: readonly PhaseDiagram[];
  readonly missing: readonly { readonly phase: PhaseName; readonly why: string }[];
}

/** Labels every word of the stack at each phase the trace captured. */
export function stackPicture(t: CaseTrace): StackPicture {
  const phases: PhaseDiagram[] = [];
  let prev: PhaseCapture | undefined;
  for (const p of t.phases) {
    phases.push(phaseDiagram(t, p, prev));
    prev = p;
  }
  return { variant: t.variant.name, bits: t.bits, R: t.R, phases, missing: t.missing };
}

function phaseDiagram(t: CaseTrace, p: PhaseCapture, prev: PhaseCapture | undefined): PhaseDiagram {
  const W = BigInt(t.word), R = t.R;
  const get = (c: PhaseCapture | undefined, a: bigint): bigint | undefined => c?.mem.word(a, t.word);
  /** Index of the word at `a` in a frame of `n` words at `base` (undefined off its grid or outside). */
  const at = (a: bigint, base: bigint | undefined, n: number): number | undefined =>
    base !== undefined && a >= base && a < base + BigInt(n) * W && (a - base) % W === 0n ? Number((a - base) / W) : undefined;
  const overlaps = (a: bigint, s: bigint, e: bigint): boolean => s < a + W && e > a;
  const spName = t.bits === 64 ? "RSP" : "ESP", ipName = t.bits === 64 ? "RIP" : "EIP";
  const delivery = t.phases.find((x) => x.phase === "delivery");
  const ptPhase = t.phases.find((x) => x.phase === "pt_regs");
  const iretPhase = t.phases.find((x) => x.phase === "iret");
  const hw = hardwareFrame(t.bits, t.variant.frame);
  const F = delivery?.sp;
  const fields = ptRegsFields(t.bits);
  const P = p.phase === "pt_regs" || p.phase === "handler" ? p.ptRegs : undefined;
  // a 32-bit frame without sp/ss: pt_regs->sp is where the interrupted stack begins (spec §2.2)
  const truncated = t.bits === 32 && ptPhase?.ptRegs !== undefined && ptPhase.ptRegs + 60n === R;
  const retAddr = t.case.site + BigInt(t.len);
  const iretFrame = iretPhase?.iret === undefined ? undefined : { sp: iretPhase.iret.sp, names: returnFrame(iretPhase.iret.mnemonic, t.bits), mnemonic: iretPhase.iret.mnemonic };
  const notes: string[] = [];
  const regsSp = P === undefined || truncated ? undefined : get(p, P + BigInt(fields.names.indexOf("sp")) * W);
  const written = p.written ?? [];
  const wrote = (a: bigint): boolean => written.some(([s, e]) => overlaps(a, s, e));
  const hitsFrame = (a: bigint): number | undefined => (iretFrame === undefined ? undefined : at(a, iretFrame.sp, iretFrame.names.length));

  // the window: from the lowest interesting word up to two words above R, on the grid of the
  // phase's stack pointer (kernel frames are aligned; R need not be)
  const near = p.sp <= R + 6n * W && p.sp >= R - 80n * W;
  const grid = near ? p.sp : R;
  if (!near) notes.push(`${spName} = ${hex(p.sp)} is ${p.sp > R ? "above" : "far below"} the interrupted stack; showing the words around R`);
  let lo = near ? p.sp : R - 4n * W;
  if (P !== undefined && P < lo && P >= R - 80n * W) lo = P;
  if (p.phase === "iret") {
    if (t.realAfter !== undefined && t.realAfter.sp < lo && t.realAfter.sp >= R - 80n * W) lo = t.realAfter.sp;
    if (iretFrame !== undefined && iretFrame.sp < lo && iretFrame.sp >= R - 80n * W) lo = iretFrame.sp;
  }
  if (F !== undefined && p.phase === "delivery" && F < lo) lo = F;
  const mod = (x: bigint): bigint => ((x % W) + W) % W;
  lo -= mod(lo - grid);
  let hi = R + 2n * W;
  if (p.phase === "iret") for (const s of [p.sp, t.realAfter?.sp]) if (s !== undefined && s + W > hi && s < R + 6n * W) hi = s + W;
  let top = hi - W;
  top -= mod(top - grid);

  // where the emulated push went: regs->sp after the handler, or (a frame without sp) the written return address
  let pushedAt: bigint | undefined;
  if (p.phase === "handler" && t.case.kind === "call") {
    if (regsSp !== undefined && wrote(regsSp) && get(p, regsSp) === retAddr) pushedAt = regsSp;
    else for (let a = top; a >= lo && pushedAt === undefined; a -= W) {
      const f = at(a, P, fields.words);
      if (wrote(a) && get(p, a) === retAddr && (f === undefined || fields.names[f] !== "ip")) pushedAt = a;
    }
  }

  const words: Word[] = [];
  for (let a = top; a >= lo; a -= W) {
    const value = get(p, a);
    if (value === undefined) continue;
    const w: Word = { addr: a, value, labels: [], kind: "other", marks: [], changed: prev !== undefined && get(prev, a) !== value, points: symbolOf(t, value), collapsible: false };
    // pt_regs (pt_regs and handler phases)
    const fi = at(a, P, fields.words);
    const field = fi === undefined ? undefined : fields.names[fi];
    if (field !== undefined) {
      w.labels.push(truncated && (field === "sp" || field === "ss") ? `pt_regs->${field} (beyond the frame)` : `pt_regs->${field}`);
      w.kind = "pt_regs";
      w.collapsible = !RETURN_FIELDS.includes(field) && field !== "orig_ax";
    }
    // the hardware frame, where delivery put it
    const hi2 = at(a, F, hw.length);
    const hwName = hi2 === undefined ? undefined : hw[hi2];
    if (hwName !== undefined && p.phase !== "iret") {
      const intact = p.phase === "delivery" || get(delivery, a) === value;
      if (field !== undefined && !intact) w.labels.push(`was hw ${hwName}`);
      else if (p.phase === "delivery" || field !== undefined) w.labels.push(`hw ${hwName}`);
      else if (t.variant.frame === "fred") { w.labels.push(`hw ${hwName} (fred_info)`); w.kind = "hw"; }
      else { w.labels.push(`gap: old hw ${hwName}`); w.kind = "gap"; }
      if (p.phase === "delivery") w.kind = "hw";
    }
    // pt_regs fields that are a copy of a hardware word elsewhere (the 64-bit gap copy, FIXUP_FRAME)
    if (p.phase === "pt_regs" && field !== undefined && hwName === undefined && F !== undefined && (RETURN_FIELDS.includes(field) || field === "orig_ax")) {
      // the matching hardware word if it was copied there, else any hardware word it is a copy of (an off-by-one copy shows)
      const same = (i: number): boolean => get(delivery, F + BigInt(i) * W) === value;
      const own = hw.findIndex((n) => fieldOfHardwareWord(n) === field);
      const i = own >= 0 && same(own) ? own : hw.findIndex((_, j) => same(j));
      if (i >= 0) w.labels.push(`${t.bits === 64 && t.variant.frame === "idt" ? "gap copy" : "copy"} of hw ${hw[i]}`);
    }
    // between the frame and R: alignment pad (IDT 64) or red zone (FRED); between pt_regs and R: the gap
    if (w.labels.length === 0 && a + W <= R && F !== undefined && a >= F + BigInt(hw.length) * W && p.phase !== "iret") {
      if (t.variant.frame === "fred") { w.labels.push("red zone"); w.kind = "redzone"; w.collapsible = true; }
      else if (P !== undefined && p.phase !== "delivery" && P + BigInt(fields.words) * W <= F) { w.labels.push("gap: alignment pad"); w.kind = "gap"; }
      else { w.labels.push("alignment pad"); w.kind = "pad"; }
    }
    if (w.labels.length === 0 && P !== undefined && a >= P + BigInt(fields.words) * W && a + W <= R && t.variant.frame === "idt") {
      w.labels.push(F !== undefined && a === F - W ? "gap: old orig_ax" : "gap");
      w.kind = "gap";
    }
    // the interrupted stack
    if (a >= R) { w.labels.push(a === R && t.case.kind === "ret" ? "interrupted stack (the address ret pops)" : "interrupted stack"); if (w.kind === "other") w.kind = "interrupted"; }
    else if (a + W > R) { w.labels.push(`straddles R: interrupted stack from byte ${R - a}`); if (w.kind === "other") w.kind = "interrupted"; }
    // below pt_regs: the call into the handler
    if ((p.phase === "pt_regs" || p.phase === "handler") && P !== undefined && a < P && a >= p.sp) {
      w.labels.push(a === p.sp && p.phase === "pt_regs" ? `return address of the call into ${p.handler ?? "the handler"}`
        : p.faulted !== undefined ? "below pt_regs (the fault's frame)" : "stub scratch");
      w.kind = "stub";
    }
    // what the handler wrote
    if (p.phase === "handler" && wrote(a)) {
      const exact = pushedAt === a;
      const part = !exact && pushedAt !== undefined && overlaps(a, pushedAt, pushedAt + W);
      if (exact || part) {
        const where = w.kind === "gap" ? " (in the gap)" : w.kind === "redzone" ? " (in the red zone)" : "";
        if (where !== "") w.labels.length = 0;
        w.labels.unshift(exact ? `pushed return address${where}` : `part of the pushed return address (at ${hex(pushedAt ?? 0n)})${where}`);
        w.kind = "pushed";
        const hitField = field !== undefined && RETURN_FIELDS.includes(field) && !(truncated && (field === "sp" || field === "ss")) ? field : undefined;
        const fi2 = hitsFrame(a);
        if (hitField !== undefined) w.warn = `the push overwrote pt_regs->${hitField}`;
        else if (hwName !== undefined && t.variant.frame === "fred") w.warn = `the push landed in the live FRED frame (its ${hwName} word)`;
        else if (fi2 !== undefined) w.warn = `the push landed in the frame ${iretFrame?.mnemonic} consumes (its ${iretFrame?.names[fi2]})`;
      } else if (field === undefined) w.labels.push(`written by ${p.handler ?? "the handler"}`);
      w.collapsible = false;
    }
    // the frame a faulting return read; or after the return: what is live, what it consumed, the real run's words
    if (p.phase === "iret" && p.faulted !== undefined) {
      const read = hitsFrame(a);
      if (read !== undefined) { w.labels.unshift(`${iretFrame?.mnemonic} reads its ${iretFrame?.names[read]} here`); w.kind = "hw"; }
      else if (a < p.sp) { w.labels.unshift("below the stack pointer"); w.kind = "dead"; w.collapsible = true; }
      else if (a < R && t.case.kind === "call" && value === retAddr) { w.labels.unshift("pushed return address"); w.kind = "pushed"; }
    } else if (p.phase === "iret") {
      if (a < p.sp) {
        const consumed = hitsFrame(a);
        w.labels.unshift(consumed === undefined ? "dead (below the stack pointer)" : `dead: ${iretFrame?.mnemonic} read its ${iretFrame?.names[consumed]} here`);
        w.kind = "dead";
        w.collapsible = consumed === undefined;
      } else if (a < R) {
        if (t.case.kind === "call" && value === retAddr) { w.labels.unshift("pushed return address"); w.kind = "pushed"; }
        else w.labels.unshift("live, below R");
      }
      const real = get(t.realAfter, a);
      const realLive = t.realAfter !== undefined && a >= t.realAfter.sp;
      if (real !== undefined && real !== value && (a >= p.sp || realLive)) { w.real = real; w.collapsible = false; }
    }
    if (a === R) w.marks.push("R");
    else if (a < R && a + W > R) w.marks.push(`R (byte ${R - a})`);
    if (a === p.sp) w.marks.push(spName);
    if (p.phase === "handler" && regsSp === a) w.marks.push("regs->sp");
    if (w.marks.length > 0 || w.changed && p.phase !== "pt_regs") w.collapsible = false;
    words.push(w);
  }

  const pointers = pointerLine(t, p, spName, ipName);
  if (p.phase === "iret" && p.faulted === undefined && t.realAfter !== undefined) {
    const diffs = Object.keys(p.regs).filter((k) => p.regs[k] !== t.realAfter!.regs[k]);
    if (diffs.length > 0) notes.push(`registers that differ from the real run: ${diffs.map((k) => `${k} ${hex(p.regs[k])} ≠ real ${hex(t.realAfter!.regs[k])}`).join(", ")}`);
    const bad = words.filter((w) => w.real !== undefined).length;
    if (bad > 0) notes.push(`${bad} stack word${bad === 1 ? "" : "s"} differ from the real run (marked ≠)`);
  }
  for (const w of words) if (w.warn !== undefined) notes.push(`at ${hex(w.addr)}: ${w.warn}`);
  const shownLo = words.length === 0 ? hi : words[words.length - 1].addr;
  for (const [s0, e0] of written) {
    if (s0 >= shownLo && e0 <= top + W) continue;
    const v = t.word === 8 && e0 - s0 === 8n ? get(p, s0) : undefined;
    notes.push(`${p.handler ?? "the handler"} also wrote ${e0 - s0} byte${e0 - s0 === 1n ? "" : "s"} at ${hex(s0)}${v === undefined ? "" : ` (${hex(v)})`}, outside this picture`);
  }
  const ptP = ptPhase?.ptRegs;
  const ripAt = F === undefined ? undefined : F + BigInt(Math.max(0, hw.indexOf(t.bits === 64 ? "RIP" : "EIP"))) * W;
  const facts: TitleFacts = {
    onFrame: ptP !== undefined && ripAt !== undefined && ptP + BigInt(fields.names.indexOf("ip")) * W === ripAt,
    complete: ptP !== undefined && !truncated && get(ptPhase, ptP + BigInt(fields.names.indexOf("sp")) * W) === R,
    pushed: pushedAt !== undefined,
    ...(p.phase === "handler" && p.ptRegs !== undefined && ptP !== undefined ? { movedBy: p.ptRegs - ptP } : {}),
  };
  return { phase: p.phase, title: PHASE_TITLE[p.phase](t, p, facts), pointers, rows: collapse(words), notes };
}


