import { hex, hexWord } from "./gas.js";
import type { DiagramRow, PhaseDiagram, StackPicture } from "./picture.js";

/**
 * A stack diagram as terminal text, high addresses at the top (the stack grows down the
 * page): address, value ("*" when it changed since the previous phase), what the word is,
 * the pointers at it (◀ R, ◀ RSP, ◀ regs->sp), "≠ real …" where the real run differs,
 * "⚠ …" where something is wrong.
 */
export function phaseText(d: PhaseDiagram, bits: 32 | 64, indent = "  "): string[] {
  const labelWidth = Math.min(64, Math.max(...d.rows.map((r) => labelOf(r).length + (r.points === undefined ? 0 : r.points.length + 1))));
  const out = [`${indent}┌─ ${d.title}`, `${indent}│  ${d.pointers}`];
  for (const r of d.rows) {
    const value = r.value === undefined ? "⋮".padStart(bits / 8 + 1).padEnd(bits / 4) : hexWord(r.value, bits);
    const tail = [
      ...(r.marks.length > 0 ? [`◀ ${r.marks.join(", ")}`] : []),
      ...(r.real !== undefined ? [`≠ real ${hex(r.real)}`] : []),
      ...(r.warn !== undefined ? [`⚠ ${r.warn}`] : []),
    ].join("  ");
    const label = `${labelOf(r)}${r.points === undefined ? "" : ` ${r.points}`}`;
    out.push(`${indent}│  ${hex(r.addr)} ${r.changed ? "*" : " "}${value}  ${tail === "" ? label : label.padEnd(labelWidth)}${tail === "" ? "" : `  ${tail}`}`.trimEnd());
  }
  for (const n of d.notes) out.push(`${indent}│  ${n}`);
  out.push(`${indent}└─`);
  return out;
}

/** Every phase of a picture, then the phases that were not reached. */
export function pictureText(p: StackPicture, indent = "  "): string[] {
  const out: string[] = [];
  for (const d of p.phases) out.push(...phaseText(d, p.bits, indent));
  for (const m of p.missing) out.push(`${indent}(no diagram ${m.phase}: ${m.why})`);
  return out;
}

function labelOf(r: DiagramRow): string {
  return r.labels.join(" = ");
}
