import fc from "fast-check";
import { describe, expect, test } from "vitest";
import { emuCase } from "../src/arbitraries/emulation.js";
import { buildKernel64 } from "../src/kernel/variants-64.js";
import { pokeInt3HandlerEmulate } from "../src/kernel/alternative.js";
import { ALL_VARIANTS, variantByName } from "../src/kernel/registry.js";
import type { PatchKind, Variant } from "../src/kernel/variant.js";
import { type EmuCase, prepare, runEmuCase } from "../src/oracle/emulation.js";
import { reportHtml } from "../src/report/html.js";
import { type DiagramRow, type PhaseDiagram, type StackPicture, stackPicture } from "../src/report/picture.js";
import { phaseSvg } from "../src/report/svg.js";
import { pictureText } from "../src/report/text.js";
import { type PhaseName, traceCase } from "../src/report/trace.js";

// Stack diagrams: the words each phase of the int3 path labels, for 64-bit, 32-bit and FRED,
// on a mutant, and on a user's own variant; the SVG/HTML they render to is well-formed.

/** A case at a fixed place: SP at `spOffset` into the task stack, zero registers. */
function caseAt(v: Variant, kind: PatchKind, spOffset: number): EmuCase {
  const site = v.bits === 64 ? 0xffffffff90001000n : 0xc4001000n;
  const target = v.bits === 64 ? 0xffffffff90402000n : 0xc4402000n;
  return { kind, cc: 0, site, target, regs: Array<bigint>(16).fill(0n), flags: 0, ifOn: true, stack: "task", spOffset, stackBytes: Uint8Array.from([0xa5, 0x5a, 1, 2]) };
}

function picture(name: string, kind: PatchKind, spOffset: number): { pic: StackPicture; c: EmuCase; R: bigint; equal: boolean } {
  const v = variantByName(name);
  const b = prepare(v);
  const c = caseAt(v, kind, spOffset);
  const equal = runEmuCase(b, c).equal;
  const t = traceCase(b, c);
  return { pic: stackPicture(t), c, R: t.R, equal };
}

const phase = (p: StackPicture, name: PhaseName): PhaseDiagram => {
  const d = p.phases.find((x) => x.phase === name);
  if (d === undefined) throw new Error(`no ${name} diagram; missing: ${JSON.stringify(p.missing)}`);
  return d;
};
const rowAt = (d: PhaseDiagram, addr: bigint): DiagramRow => {
  const r = d.rows.find((x) => x.addr === addr && x.words === 1);
  if (r === undefined) throw new Error(`no row at 0x${addr.toString(16)} in ${d.phase}`);
  return r;
};
const spRow = (d: PhaseDiagram, sp: string): DiagramRow => {
  const r = d.rows.find((x) => x.marks.includes(sp));
  if (r === undefined) throw new Error(`no row marked ${sp} in ${d.phase}`);
  return r;
};
const label = (r: DiagramRow): string => r.labels.join(" = ");

describe("x86-64 (IDT, the 6-word gap)", () => {
  // R ≡ 0 (mod 16): the hardware frame ends right at R
  const { pic, c, R, equal } = picture("x86_64/v5.6", "call", 0x3000);

  test("after delivery the word at RSP is hw RIP = site+1, the frame runs up to hw SS just below R", () => {
    const d = phase(pic, "delivery");
    const top = spRow(d, "RSP");
    expect(label(top)).toBe("hw RIP");
    expect(top.value).toBe(c.site + 1n);
    expect(top.addr).toBe(R - 40n);
    expect(label(rowAt(d, R - 8n))).toBe("hw SS");
    expect(rowAt(d, R).marks).toContain("R");
  });

  test("after the gap copy pt_regs->ip..ss are copies of the hardware frame six words further down", () => {
    const d = phase(pic, "pt_regs");
    const ip = d.rows.find((r) => r.labels[0] === "pt_regs->ip");
    expect(ip?.labels).toContain("gap copy of hw RIP");
    expect(ip?.value).toBe(c.site + 1n);
    expect(ip?.addr).toBe(R - 40n - 48n);
    expect(label(rowAt(d, R - 40n))).toBe("gap: old hw RIP");
    expect(label(spRow(d, "RSP"))).toBe("return address of the call into do_int3");
  });

  test("after the emulated push the return address sits at old RSP − 8, in the gap, where regs->sp points", () => {
    const d = phase(pic, "handler");
    const pushed = rowAt(d, R - 8n);
    expect(pushed.labels[0]).toBe("pushed return address (in the gap)");
    expect(pushed.value).toBe(c.site + 5n);
    expect(pushed.marks).toContain("regs->sp");
    expect(pushed.changed).toBe(true);
    expect(pushed.warn).toBeUndefined();
  });

  test("after IRETQ RSP is R − 8 at the pushed return address, and nothing differs from the real run", () => {
    expect(equal).toBe(true);
    const d = phase(pic, "iret");
    expect(d.title).toMatch(/after iretq/);
    const top = spRow(d, "RSP");
    expect(top.addr).toBe(R - 8n);
    expect(top.labels[0]).toBe("pushed return address");
    expect(d.rows.filter((r) => r.real !== undefined)).toEqual([]);
    expect(d.pointers).not.toMatch(/≠/);
    expect(d.rows.some((r) => /iretq read its SS/.test(label(r)))).toBe(true);
  });
});

describe("x86-32 (v5.3 FIXUP_FRAME)", () => {
  // any alignment: R ≡ 3 (mod 4)
  const { pic, c, R, equal } = picture("x86_32/v5.3", "call", 0x1003);

  test("after delivery: EIP, CS, EFLAGS and no SS:ESP — EFLAGS is the word just below R", () => {
    const d = phase(pic, "delivery");
    const top = spRow(d, "ESP");
    expect(label(top)).toBe("hw EIP");
    expect(top.value).toBe(c.site + 1n);
    expect(top.addr).toBe(R - 12n);
    expect(label(rowAt(d, R - 4n))).toBe("hw EFLAGS");
  });

  test("after the fix-up pt_regs->sp holds R and the original frame is in the gap", () => {
    const d = phase(pic, "pt_regs");
    const sp = d.rows.find((r) => r.labels[0] === "pt_regs->sp");
    expect(sp?.value).toBe(R);
    expect(label(rowAt(d, R - 12n))).toBe("gap: old hw EIP");
  });

  test("the push lands at R − 4 and IRET leaves ESP there", () => {
    expect(equal).toBe(true);
    const pushed = rowAt(phase(pic, "handler"), R - 4n);
    expect(pushed.labels[0]).toMatch(/^pushed return address/);
    expect(pushed.value).toBe(c.site + 5n);
    const d = phase(pic, "iret");
    expect(spRow(d, "ESP").addr).toBe(R - 4n);
  });
});

describe("FRED (v6.9)", () => {
  const { pic, c, R, equal } = picture("x86_64-fred/v6.9", "call", 0x3000);

  test("after delivery the 64-byte frame sits below the red zone: error code at RSP, RIP = site+1 above it", () => {
    const d = phase(pic, "delivery");
    const top = spRow(d, "RSP");
    expect(label(top)).toBe("hw error code");
    expect(top.addr).toBe(((R - 64n) & ~63n) - 64n);
    expect(label(rowAt(d, top.addr + 8n))).toBe("hw RIP");
    expect(rowAt(d, top.addr + 8n).value).toBe(c.site + 1n);
    const zone = d.rows.find((r) => r.kind === "redzone" && r.addr <= R - 8n && R - 8n < r.addr + BigInt(8 * r.words));
    expect(zone?.labels[0]).toMatch(/red zone/);
  });

  test("pt_regs is the FRED frame itself (no copy), and the push lands in the red zone", () => {
    const ip = phase(pic, "pt_regs").rows.find((r) => r.labels[0] === "pt_regs->ip");
    expect(ip?.labels).toEqual(["pt_regs->ip", "hw RIP"]);
    const pushed = rowAt(phase(pic, "handler"), R - 8n);
    expect(pushed.labels[0]).toBe("pushed return address (in the red zone)");
    expect(pushed.warn).toBeUndefined();
    expect(equal).toBe(true);
    expect(phase(pic, "iret").title).toMatch(/after erets/);
  });
});

describe("mutants and fallbacks", () => {
  test("no gap, R ≡ 0 (mod 16): the push overlaps the frame — it overwrites pt_regs->ss, and IRETQ faults on it", () => {
    const { pic, c, R, equal } = picture("x86_64/mutant/no-gap", "call", 0x3000);
    expect(equal).toBe(false);
    const pushed = rowAt(phase(pic, "handler"), R - 8n);
    expect(pushed.labels).toContain("pushed return address");
    expect(pushed.labels).toContain("pt_regs->ss");
    expect(pushed.warn).toBe("the push overwrote pt_regs->ss");
    const at = phase(pic, "iret");
    expect(at.title).toMatch(/at iretq.*raised #GP/);
    const ss = rowAt(at, R - 8n);
    expect(label(ss)).toBe("iretq reads its SS here");
    expect(ss.value).toBe(c.site + 5n);
  });

  test("no gap, R ≡ 8 (mod 16): the push lands in the alignment pad and nothing is flagged", () => {
    const { pic, equal, R } = picture("x86_64/mutant/no-gap", "call", 0x3008);
    expect(equal).toBe(true);
    expect(phase(pic, "handler").rows.filter((r) => r.warn !== undefined)).toEqual([]);
    expect(rowAt(phase(pic, "handler"), R - 8n).labels[0]).toBe("pushed return address");
  });

  test("a handler that oopses: the phases it reached are drawn, the rest say why", () => {
    const { pic } = picture("x86_64/mutant/gap-5-words", "call", 0x3000);
    expect(pic.phases.map((p) => p.phase)).toEqual(["delivery", "pt_regs", "handler"]);
    expect(pic.missing).toEqual([{ phase: "iret", why: expect.stringMatching(/die: int3/) }]);
    // the off-by-one copy shows: pt_regs->ip holds what was hw CS
    expect(phase(pic, "pt_regs").rows.find((r) => r.labels[0] === "pt_regs->ip")?.labels).toContain("gap copy of hw CS");
    expect(pictureText(pic).join("\n")).toMatch(/\(no diagram iret: not reached/);
  });

  test("the real run's words are shown where the emulated run differs (an ftrace int3 that skips the call)", () => {
    const { pic, R } = picture("x86_64/mutant/ftrace-skips-call", "call", 0x3000);
    const d = phase(pic, "iret");
    expect(d.pointers).toMatch(/RSP 0x[0-9a-f]+ ≠ real 0x/);
    expect(rowAt(d, R - 8n).real).toBeDefined();
    expect(d.notes.join("\n")).toMatch(/registers that differ from the real run: rsp/);
  });

  test("a user's own variant (a 4-word gap) is drawn with the same phases, as far as it gets", () => {
    const mine: Variant = {
      name: "mine/x86_64-gap-4", bits: 64, frame: "idt", sites: "poke", emulates: ["call"], summary: "a 4-word gap",
      boot: () => buildKernel64({ gapWords: 4, chain: () => ({ poke: (k, regs) => pokeInt3HandlerEmulate(k, regs, { ret: false, jcc: false }) }) }),
    };
    const b = prepare(mine);
    const t = traceCase(b, caseAt(mine, "call", 0x3000));
    const pic = stackPicture(t);
    // a 4-word copy is too short: the exit never gets back (the README's candidate example fails)
    expect(pic.phases.map((p) => p.phase)).toEqual(["delivery", "pt_regs", "handler"]);
    expect(pic.missing[0]?.phase).toBe("iret");
    expect(label(spRow(phase(pic, "delivery"), "RSP"))).toBe("hw RIP");
    expect(phase(pic, "pt_regs").title).toBe("after the gap copy: pt_regs built; the stub calls do_int3");
    // four words copied: pt_regs->ip sits 4 words below the hardware RIP
    expect(phase(pic, "pt_regs").rows.find((r) => r.labels[0] === "pt_regs->ip")?.addr).toBe(t.R - 40n - 32n);
  });

  test("FRED without the red zone, R ≡ 0 (mod 64): the push lands in the live FRED frame", () => {
    const { pic, R } = picture("x86_64-fred/mutant/red-zone-0", "call", 0x3000);
    const pushed = rowAt(phase(pic, "handler"), R - 8n);
    expect(pushed.labels[0]).toBe("pushed return address");
    expect(pushed.warn).toBe("the push landed in the live FRED frame (its reserved word)");
  });

  test("i386 2019-05-04 design: pt_regs moves down a word and its sp slot is the push", () => {
    const { pic, R, equal } = picture("x86_32/2019-05-04", "call", 0x1001);
    expect(equal).toBe(true);
    expect(phase(pic, "pt_regs").title).toMatch(/^pt_regs built on the hardware frame \(no sp\/ss/);
    const before = phase(pic, "pt_regs").pointers.match(/pt_regs (0x[0-9a-f]+)/)?.[1];
    const after = phase(pic, "handler").pointers.match(/pt_regs (0x[0-9a-f]+)/)?.[1];
    expect(BigInt(after ?? "0") - BigInt(before ?? "0")).toBe(-4n);
    const pushed = rowAt(phase(pic, "handler"), R - 4n);
    expect(pushed.labels.slice(0, 2)).toEqual(["pushed return address", "pt_regs->sp (beyond the frame)"]);
    expect(pushed.warn).toBeUndefined();
  });

  test("a variant that emulates nothing yet: the handler returns, nothing was pushed", () => {
    const { pic } = picture("x86_64/v5.1", "call", 0x3000);
    expect(phase(pic, "pt_regs").title).toMatch(/^pt_regs built on the hardware frame \(no gap copy\)/);
    expect(phase(pic, "handler").title).toBe("do_int3 returned, nothing was pushed");
  });
});

describe("every variant, random cases", () => {
  const variants = ALL_VARIANTS.filter((v) => v.emulates.length > 0);
  test.each(variants.map((v) => [v.name, v] as const))("%s: every phase is drawn, delivery's top word is the saved IP, and an equal case shows no difference", (_, v) => {
    const b = prepare(v);
    fc.assert(fc.property(emuCase(b.k.L, v.emulates), (c) => {
      const equal = runEmuCase(b, c).equal;
      const pic = stackPicture(traceCase(b, c));
      expect(pic.missing).toEqual([]);
      const d = phase(pic, "delivery");
      const sp = spRow(d, v.bits === 64 ? "RSP" : "ESP");
      const ipRow = v.frame === "fred" ? rowAt(d, sp.addr + 8n) : sp;
      expect(label(ipRow)).toBe(v.bits === 64 ? "hw RIP" : "hw EIP");
      expect(ipRow.value).toBe(c.site + 1n);
      const iret = phase(pic, "iret");
      expect(equal).toBe(true);
      expect(iret.rows.filter((r) => r.real !== undefined)).toEqual([]);
      if (c.kind === "call") expect(phase(pic, "handler").rows.some((r) => r.kind === "pushed")).toBe(true);
    }), { numRuns: 25 });
  });
});

describe("rendering", () => {
  const { pic } = picture("x86_64/mutant/no-gap", "call", 0x3000);

  test("text: one block per phase with addresses, values, labels and marks", () => {
    const text = pictureText(pic).join("\n");
    expect(text).toMatch(/┌─ after delivery/);
    expect(text).toMatch(/0x[0-9a-f]+ +ffffffff90001001 +hw RIP <site\+0x1> +◀ RSP/);
    expect(text).toMatch(/⚠ the push overwrote pt_regs->ss/);
  });

  test("SVG and HTML are well-formed, self-contained, one <svg> per phase", () => {
    const svg = phaseSvg(phase(pic, "handler"), 64);
    expect(wellFormed(svg)).toBe(true);
    expect(svg).toMatch(/^<svg xmlns="http:\/\/www.w3.org\/2000\/svg"/);
    expect(svg).toContain("the push overwrote pt_regs-&gt;ss");
    const html = reportHtml("t <&>", [["seed", "1"]], [{ heading: "FAILED x", fields: [["replay", "int3bed check --seed 1"]], registers: [["rsp", "0x1", "0x2"]], stack: pic }]);
    expect(wellFormed(html.replace(/^<!DOCTYPE html>/, ""))).toBe(true);
    expect(html.match(/<svg /g)?.length).toBe(pic.phases.length);
    expect(html).not.toMatch(/(src|href)=["']?(https?:)?\/\//);
    expect(html).toContain("t &lt;&amp;&gt;");
  });
});

/** A small XML well-formedness check: every tag closed in order (HTML void <meta> allowed). */
function wellFormed(doc: string): boolean {
  const stack: string[] = [];
  for (const m of doc.matchAll(/<(\/?)([a-zA-Z][\w-]*)([^>]*?)(\/?)>/g)) {
    const [, close, name, , self] = m;
    if (self === "/" || name === "meta") continue;
    if (close === "/") { if (stack.pop() !== name) return false; } else stack.push(name);
  }
  return stack.length === 0 && !/<(?![a-zA-Z/!])/.test(doc.replace(/<!DOCTYPE[^>]*>/, ""));
}
