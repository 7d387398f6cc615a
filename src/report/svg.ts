import { hex, hexWord } from "./gas.js";
import type { DiagramRow, PhaseDiagram, WordKind } from "./picture.js";

/** Fill colours of the word kinds (a legend is in the HTML page). */
export const KIND_COLOUR: Record<WordKind, string> = {
  interrupted: "#dfe8f5", hw: "#fbd9b0", pt_regs: "#cfe3fb", gap: "#fff3b0", pad: "#f3f3e0", redzone: "#fde2e2",
  pushed: "#c8f0c8", stub: "#e6dcf5", dead: "#eeeeee", other: "#ffffff",
};

/** What each kind means, for the legend. */
export const KIND_MEANING: Record<WordKind, string> = {
  interrupted: "the interrupted stack (at and above R)", hw: "the hardware (or FRED) frame", pt_regs: "struct pt_regs",
  gap: "the gap (dead after the copy)", pad: "alignment pad", redzone: "FRED red zone", pushed: "the emulated push",
  stub: "entry stub's call/scratch", dead: "dead (below the stack pointer)", other: "other",
};

const ROW = 20, TOP = 48, ADDR_X = 8, BOX_X = 170, CHAR = 7.2;

/** `s` with XML's special characters escaped. */
export function xml(s: string): string {
  return s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");
}

/**
 * One phase's stack diagram as a self-contained SVG: a column of words (high addresses on
 * top), each box coloured by what the word is, its value inside ("*" when changed since the
 * previous phase), its labels to the right, arrows for R / the stack pointer / regs->sp, and
 * the real run's value in red where it differs.
 */
export function phaseSvg(d: PhaseDiagram, bits: 32 | 64): string {
  const boxW = bits === 64 ? 162 : 92;
  const labelX = BOX_X + boxW + 12;
  const text = (r: DiagramRow): string => [r.labels.join(" = "), r.points ?? ""].filter((x) => x !== "").join(" ");
  const tails = (r: DiagramRow): string[] => [
    ...(r.marks.length > 0 ? [`◀ ${r.marks.join(", ")}`] : []),
    ...(r.real !== undefined ? [`≠ real ${hex(r.real)}`] : []),
    ...(r.warn !== undefined ? [`⚠ ${r.warn}`] : []),
  ];
  const labelW = Math.max(0, ...d.rows.map((r) => text(r).length)) * CHAR;
  const tailX = labelX + Math.min(labelW, 460) + 16;
  const width = Math.ceil(Math.max(
    tailX + Math.max(0, ...d.rows.map((r) => tails(r).join("  ").length)) * CHAR,
    (d.title.length + 2) * CHAR, (d.pointers.length + 2) * CHAR, ...d.notes.map((n) => (n.length + 2) * CHAR),
  )) + 16;
  const height = TOP + d.rows.length * ROW + d.notes.length * 18 + 16;
  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" class="stack" data-phase="${d.phase}" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="ui-monospace, Menlo, Consolas, monospace" font-size="12">`,
    `<title>${xml(d.title)}</title>`,
    `<text x="${ADDR_X}" y="16" font-weight="bold">${xml(d.title)}</text>`,
    `<text x="${ADDR_X}" y="34" fill="#444">${xml(d.pointers)}</text>`,
  ];
  d.rows.forEach((r, i) => {
    const y = TOP + i * ROW;
    const mid = y + ROW / 2 + 4;
    const stroke = r.warn !== undefined || r.real !== undefined ? "#c00000" : "#888";
    const sw = r.warn !== undefined || r.real !== undefined ? 2 : 1;
    const value = r.value === undefined ? `⋮ ${r.words} words` : `${r.changed ? "*" : ""}${hexWord(r.value, bits)}`;
    out.push(
      `<g class="word kind-${r.kind}">`,
      `<text x="${ADDR_X}" y="${mid}" fill="#555">${hex(r.addr)}</text>`,
      `<rect x="${BOX_X}" y="${y + 1}" width="${boxW}" height="${ROW - 2}" fill="${KIND_COLOUR[r.kind]}" stroke="${stroke}" stroke-width="${sw}"/>`,
      `<text x="${BOX_X + 6}" y="${mid}"${r.changed ? ` font-weight="bold"` : ""}>${xml(value)}</text>`,
      `<text x="${labelX}" y="${mid}">${xml(text(r))}</text>`,
    );
    const t = tails(r);
    if (t.length > 0) out.push(`<text x="${tailX}" y="${mid}" fill="${r.warn !== undefined || r.real !== undefined ? "#c00000" : "#0050a0"}">${xml(t.join("  "))}</text>`);
    out.push("</g>");
  });
  d.notes.forEach((n, i) => out.push(`<text x="${ADDR_X}" y="${TOP + d.rows.length * ROW + 16 + i * 18}" fill="#c00000">${xml(n)}</text>`));
  out.push("</svg>");
  return out.join("\n");
}
