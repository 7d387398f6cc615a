import { hex } from "./gas.js";
import type { DiagramRow, WordKind } from "./picture.js";
import type { CaseTrace, PhaseCapture } from "./trace.js";

/** A stack word while it is being labelled (a DiagramRow once collapsed). */
export interface Word { addr: bigint; value: bigint; labels: string[]; kind: WordKind; marks: string[]; changed: boolean; warn?: string; real?: bigint; points: string; collapsible: boolean }

/** Collapses runs of saved general registers and of dead words into one row each. */
export function collapse(words: readonly Word[]): DiagramRow[] {
  const out: DiagramRow[] = [];
  let i = 0;
  const row = (w: Word): DiagramRow => ({
    addr: w.addr, words: 1, value: w.value, labels: w.labels, kind: w.kind, marks: w.marks, changed: w.changed,
    ...(w.warn === undefined ? {} : { warn: w.warn }), ...(w.real === undefined ? {} : { real: w.real }),
    ...(w.points === "" ? {} : { points: w.points }),
  });
  while (i < words.length) {
    const w = words[i];
    let j = i;
    while (j < words.length && words[j].collapsible && words[j].kind === w.kind) j++;
    if (w.collapsible && j - i >= 3) {
      const run = words.slice(i, j);
      const label = w.kind === "pt_regs"
        ? `${run[0].labels[0]} … ${run[run.length - 1].labels[0]} (${run.length} saved registers)`
        : w.kind === "redzone" ? `${run.length} words of red zone` : `${run.length} dead words`;
      out.push({ addr: run[run.length - 1].addr, words: run.length, labels: [label], kind: w.kind, marks: [], changed: run.some((x) => x.changed) });
      i = j;
    } else {
      out.push(row(w));
      i++;
    }
  }
  return out;
}

/** The phase's stack and instruction pointers, R, pt_regs; at the resume point the real run's where they differ. */
export function pointerLine(t: CaseTrace, p: PhaseCapture, spName: string, ipName: string): string {
  const real = p.phase === "iret" && p.faulted === undefined ? t.realAfter : undefined;
  const withSym = (v: bigint): string => { const s = symbolOf(t, v); return s === "" ? hex(v) : `${hex(v)} ${s}`; };
  const one = (name: string, v: bigint, r: bigint | undefined): string =>
    `${name} ${withSym(v)}${r !== undefined && r !== v ? ` ≠ real ${withSym(r)}` : ""}`;
  return [
    one(spName, p.sp, real?.sp),
    one(ipName, p.ip, real?.ip),
    `R ${hex(t.R)}`,
    ...(p.ptRegs !== undefined && p.phase !== "iret" ? [`pt_regs ${hex(p.ptRegs)}`] : []),
  ].join("  ");
}

/** `<asm_int3+0x4f>` for an address in or just after a known symbol; "" otherwise. */
export function symbolOf(t: CaseTrace, v: bigint): string {
  let best: [string, bigint] | undefined;
  for (const [name, a] of t.symbols) if (a <= v && v - a < 0x1000n && (best === undefined || a > best[1])) best = [name, a];
  if (best !== undefined) return `<${best[0]}${v === best[1] ? "" : `+${hex(v - best[1])}`}>`;
  if (v >= t.case.site && v < t.case.site + 16n) return `<site${v === t.case.site ? "" : `+${hex(v - t.case.site)}`}>`;
  if (v >= t.target && v < t.target + 64n) return `<target${v === t.target ? "" : `+${hex(v - t.target)}`}>`;
  return "";
}
