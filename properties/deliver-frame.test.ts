import fc from "fast-check";
import { describe, expect, test } from "vitest";
import { createHash } from "node:crypto";
import { Journal } from "../src/index.js";
import { EDGE_OFF, RO_OFF, rig } from "./support/fault-rig.js";

// 64-bit delivery writes its frame at once when nothing can tell the difference (deliver.ts
// frameAtOnce: no write watch, the frame in one page, no code there); otherwise word by word.
// A write watch forces the word-by-word path, so the same event on two identical machines,
// one watched, must end in the same state, the same memory and the same events — wherever
// RSP is (any alignment, a page start, above an unmapped or a read-only page: #PF, #DF) and
// whether the event pushes an error code (#PF, #GP) or not (INT3) — and the write journal's
// rollback must restore the same bytes.

interface Case { readonly where: "stack" | "edge" | "ro"; readonly off: number; readonly insn: "int3" | "load"; readonly rax: bigint; readonly flags: number; readonly dirt: number }

const caseArb: fc.Arbitrary<Case> = fc.record({
  where: fc.constantFrom("stack" as const, "stack" as const, "edge" as const, "ro" as const),
  off: fc.oneof(fc.integer({ min: 0, max: 0x3fff }), fc.integer({ min: 0, max: 64 }), fc.integer({ min: 0, max: 3 }).map((k) => 0x1000 * k + 8)),
  insn: fc.constantFrom("int3" as const, "load" as const),
  rax: fc.oneof(fc.constant(0xffffc90000020000n + RO_OFF), fc.constant(0xffffc90000022000n), fc.constant(0x0000800000000000n)),
  flags: fc.integer({ min: 0, max: 0xfff }),
  // the seed of the bytes the frame's page holds before (a journal record that keeps the wrong
  // old bytes then shows after the rollback)
  dirt: fc.integer(),
});

function run(c: Case, watched: boolean): string {
  const r = rig(64);
  const m = r.m;
  const base = c.where === "stack" ? r.L.kstack : c.where === "edge" ? r.L.kdata + EDGE_OFF : r.L.kdata + RO_OFF;
  const sp = base + BigInt(c.where === "stack" ? c.off : c.off & 0xfff);
  m.load(r.L.kcode, c.insn === "int3" ? [0xcc] : [0x48, 0x8b, 0x00]);
  m.cpu.rip = r.L.kcode;
  m.cpu.sp = sp;
  m.cpu.setReg(0, c.rax);
  m.cpu.flags = 0x2 | (c.flags & 0x8d5);
  const pg = (sp - 8n) & ~0xfffn;
  let x = c.dirt | 1;
  if (m.mem.isMapped(pg)) m.load(pg, Uint8Array.from({ length: 4096 }, () => { x = Math.imul(x, 1103515245) + 12345; return x >>> 24; }));
  const j = new Journal();
  m.mem.journal = j; // (rolled back below: the frame's journal record must restore what it overwrote)
  const writes: string[] = [];
  if (watched) m.onWrite((a, n) => { writes.push(`${a}+${n}`); });
  const res = m.run({ maxSteps: 3 });
  const hashes = (): string[] => [...m.mem.pages.entries()].sort((x, y) => x[0] - y[0]).map(([k, p]) => `${k}:${p.perm}:${createHash("md5").update(p.data).digest("hex")}`);
  const mem = hashes(), cpu = m.snapshot().cpus;
  m.mem.rollback(0);
  const undone = hashes();
  return JSON.stringify({ res, cpu, events: r.events, mem, undone },
    (_k, v: unknown) => (typeof v === "bigint" ? v.toString(16) : v instanceof Int32Array ? Array.from(v) : v));
}

describe("64-bit delivery's frame written at once equals the pushes one by one", () => {
  test("INT3, #PF and #GP anywhere on the stack, at page starts, above unmapped and read-only pages", () => {
    fc.assert(fc.property(caseArb, (c) => {
      expect(run(c, false)).toBe(run(c, true));
    }), { numRuns: 300 });
  });
});
