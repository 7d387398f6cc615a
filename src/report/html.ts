import type { StackPicture, WordKind } from "./picture.js";
import { KIND_COLOUR, KIND_MEANING, phaseSvg, xml } from "./svg.js";

/** One counterexample on the report page. */
export interface ReportEntry {
  /** e.g. "FAILED  emulated ≡ real  x86_64/mutant/no-gap". */
  readonly heading: string;
  /** Label → text rows: variant, property, replay command, shrunk case, site disassembly, how the runs ended, … */
  readonly fields: readonly (readonly [string, string])[];
  /** Registers that differ: name, real, emulated (already formatted). */
  readonly registers: readonly (readonly [string, string, string])[];
  readonly stack?: StackPicture;
}

const CSS = `
body { font-family: system-ui, sans-serif; margin: 2em; color: #111; max-width: 1400px; }
h1 { font-size: 1.4em; } h2 { font-size: 1.15em; margin-top: 2.2em; border-top: 2px solid #c00000; padding-top: .6em; }
table.fields td:first-child { color: #555; padding-right: 1.2em; vertical-align: top; white-space: nowrap; }
table.fields td, table.regs td, table.regs th { font-family: ui-monospace, Menlo, Consolas, monospace; font-size: 13px; }
table.regs { border-collapse: collapse; margin: .6em 0; } table.regs td, table.regs th { border: 1px solid #ccc; padding: 2px 8px; text-align: left; }
table.regs td.bad { color: #c00000; }
.phase { margin: 1em 0; overflow-x: auto; } .missing { color: #a05000; font-style: italic; }
.legend span { display: inline-block; margin: 0 1em .3em 0; font-size: 13px; }
.legend i { display: inline-block; width: 1em; height: 1em; border: 1px solid #888; vertical-align: -2px; margin-right: .3em; }
code { font-family: ui-monospace, Menlo, Consolas, monospace; }
`;

/**
 * A self-contained HTML page (inline CSS and SVG, no external assets) with every
 * counterexample: its fields, the differing registers and one SVG stack diagram per phase.
 */
export function reportHtml(title: string, meta: readonly (readonly [string, string])[], entries: readonly ReportEntry[]): string {
  const kinds = Object.keys(KIND_COLOUR) as WordKind[];
  const legend = `<p class="legend">${kinds.map((k) => `<span><i style="background:${KIND_COLOUR[k]}"></i>${xml(KIND_MEANING[k])}</span>`).join("")}<span>* changed since the previous phase</span><span style="color:#c00000">≠ real: differs from the real run</span></p>`;
  const body = entries.length === 0 ? ["<p>No failures: every property held.</p>"] : entries.map(entryHtml);
  return [
    "<!DOCTYPE html>",
    `<html lang="en"><head><meta charset="utf-8"><title>${xml(title)}</title><style>${CSS}</style></head><body>`,
    `<h1>${xml(title)}</h1>`,
    `<table class="fields">${meta.map(([k, v]) => `<tr><td>${xml(k)}</td><td>${xml(v)}</td></tr>`).join("")}</table>`,
    entries.length === 0 ? "" : legend,
    ...body,
    "</body></html>",
    "",
  ].join("\n");
}

function entryHtml(e: ReportEntry, i: number): string {
  const out = [
    `<section class="failure" id="failure-${i + 1}">`,
    `<h2>${xml(e.heading)}</h2>`,
    `<table class="fields">${e.fields.map(([k, v]) => `<tr><td>${xml(k)}</td><td>${xml(v)}</td></tr>`).join("")}</table>`,
  ];
  if (e.registers.length > 0) {
    out.push(`<table class="regs"><tr><th>register</th><th>real</th><th>emulated</th></tr>${e.registers.map(([n, a, b]) => `<tr><td>${xml(n)}</td><td>${xml(a)}</td><td class="bad">${xml(b)}</td></tr>`).join("")}</table>`);
  }
  if (e.stack !== undefined) {
    const s = e.stack;
    for (const d of s.phases) out.push(`<div class="phase">${phaseSvg(d, s.bits)}</div>`);
    for (const m of s.missing) out.push(`<p class="missing">no diagram ${xml(m.phase)}: ${xml(m.why)}</p>`);
  }
  out.push("</section>");
  return out.join("\n");
}
