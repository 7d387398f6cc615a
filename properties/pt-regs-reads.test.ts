import fc from "fast-check";
import { createHash } from "node:crypto";
import { describe, expect, test } from "vitest";
import { CpuFault, Machine, Perm } from "../src/index.js";
import { PT_REGS_32, PT_REGS_64, PtRegs, type PtRegsField } from "../src/kernel/pt-regs.js";

// A handler's pt_regs reads between PtRegs.beginReads and its first write are word loads from
// the page beginReads resolved once (pt-regs.ts); outside that window, and whenever the window
// cannot open (a read watch, a struct not word-aligned within one page), every field access goes
// through Memory. The same handler-shaped sequence — reads, then writes, snapshots and direct
// memory writes — on two identical machines, one with the window and one without, must read
// the same values, raise the same faults (CR2 included: the look-up is the first field's) and
// leave the same memory.

const BASE: Record<32 | 64, bigint> = { 64: 0xffffc90000020000n, 32: 0xc2020000n };

type Op =
  | { readonly kind: "read"; readonly f: PtRegsField }
  | { readonly kind: "write"; readonly f: PtRegsField; readonly lo: number; readonly hi: number }
  | { readonly kind: "poke"; readonly off: number; readonly lo: number }
  | { readonly kind: "snapshot" };

interface Case {
  readonly bits: 32 | 64;
  /** The struct's offset from BASE: pages +0 RW, +0x1000 read-only, +0x2000 RW, +0x3000 unmapped. */
  readonly at: number;
  readonly first: number;
  readonly reads: readonly number[];
  readonly after: readonly Op[];
  readonly watched: boolean;
  readonly dirt: number;
}

const fieldsOf = (bits: 32 | 64): PtRegsField[] => Object.keys(bits === 64 ? PT_REGS_64 : PT_REGS_32) as PtRegsField[];

function opArb(bits: 32 | 64): fc.Arbitrary<Op> {
  // (mostly the fields a trap handler touches: a read then meets an earlier write)
  const f = fc.oneof(fc.constantFrom<PtRegsField>("ip", "sp", "cs", "flags"), fc.constantFrom(...fieldsOf(bits)));
  return fc.oneof(
    f.map((x) => ({ kind: "read" as const, f: x })),
    fc.record({ kind: fc.constant("write" as const), f, lo: fc.integer(), hi: fc.integer() }),
    fc.record({ kind: fc.constant("poke" as const), off: fc.oneof(fc.constantFrom(128, 152, 48, 60), fc.integer({ min: -16, max: 176 })), lo: fc.integer() }),
    fc.constant({ kind: "snapshot" as const }),
  );
}

const caseArb: fc.Arbitrary<Case> = fc.constantFrom(32 as const, 64 as const).chain((bits) => fc.record({
  bits: fc.constant(bits),
  at: fc.oneof(
    fc.integer({ min: 0, max: 0x3fff }),
    fc.integer({ min: 0, max: 0x7ff }).map((k) => 8 * k),               // word-aligned anywhere on the pages
    fc.integer({ min: 0, max: 3 }).map((p) => 0x1000 * p + 4096 - 168),  // the last fit in a page
    fc.integer({ min: 0, max: 3 }).map((p) => 0x1000 * p + 4096 - 160),  // running into the next page
  ),
  first: fc.nat({ max: 30 }),
  reads: fc.array(fc.nat({ max: 30 }), { maxLength: 6 }),
  after: fc.array(opArb(bits), { maxLength: 16 }),
  watched: fc.boolean(),
  dirt: fc.integer(),
}));

function machine(c: Case): Machine {
  const m = new Machine({ bits: c.bits });
  const b = BASE[c.bits];
  m.map(b, 0x1000).map(b + 0x1000n, 0x1000, Perm.R).map(b + 0x2000n, 0x1000);
  let x = c.dirt | 1;
  const bytes = Uint8Array.from({ length: 0x3000 }, () => { x = Math.imul(x, 1103515245) + 12345; return x >>> 24; });
  m.load(b, bytes); // (loads bypass the read-only page's W)
  return m;
}

function attempt(out: string[], f: () => string): boolean {
  try { out.push(f()); return true; } catch (e) {
    if (!(e instanceof CpuFault)) throw e;
    out.push(`fault ${e.vector}/${e.errorCode ?? "-"}/${e.cr2?.toString(16) ?? "-"}`);
    return false;
  }
}

/** The handler-shaped sequence: reads (the first one `first`), then the rest; windowed or not. */
function run(c: Case, window: boolean): string {
  const m = machine(c);
  const out: string[] = [];
  if (c.watched) m.onRead((a, n) => { out.push(`r ${a.toString(16)}+${n}`); }); // (the window must not open: the watch sees every read)
  const regs = new PtRegs(m, BASE[c.bits] + BigInt(c.at));
  const fields = fieldsOf(c.bits);
  const first = fields[c.first % fields.length];
  const read = (f: PtRegsField) => () => { const l = regs.lo32(f); return `${f}=${l}:${regs.rhi}`; };
  // (a fault from beginReads stands for the first read's: the two must be the same fault)
  const ok0 = window ? attempt(out, () => { regs.beginReads(first); return "-"; }) : true;
  let ok = ok0 && attempt(out, read(first));
  if (window && ok0) out.splice(out.indexOf("-"), 1);
  for (const r of c.reads) if (ok) ok = attempt(out, read(fields[r % fields.length]));
  for (const op of c.after) {
    if (!ok) break;
    if (op.kind === "read") ok = attempt(out, read(op.f));
    else if (op.kind === "write") ok = attempt(out, () => { regs.setHalves(op.f, op.lo, op.hi); return "w"; });
    else if (op.kind === "poke") {
      // (a direct write after the handler's first write through the view, as int3_emulate_push's store)
      if (!out.includes("w")) continue;
      const a = BASE[c.bits] + BigInt(c.at + op.off);
      ok = attempt(out, () => { m.write32(a, op.lo >>> 0); return "p"; });
    } else { m.snapshot(); out.push("s"); }
  }
  regs.endReads();
  const pages = [...m.mem.pages.entries()].sort((a, b) => a[0] - b[0]).map(([k, p]) => `${k}:${createHash("md5").update(p.data).digest("hex")}`);
  return JSON.stringify({ out, pages });
}

describe("PtRegs' read window equals field reads through Memory", () => {
  test("reads then writes, snapshots and direct writes; anywhere, watched or not, 32- and 64-bit", () => {
    fc.assert(fc.property(caseArb, (c) => {
      expect(run(c, true)).toBe(run(c, false));
    }), { numRuns: 400 });
  });

  test("the window opens on a word-aligned struct within a page (the property is not only about the fallback)", () => {
    const c: Case = { bits: 64, at: 0x800, first: 0, reads: [], after: [], watched: false, dirt: 1 };
    const m = machine(c);
    const regs = new PtRegs(m, BASE[64] + 0x800n);
    regs.beginReads("cs");
    let seen = 0;
    m.onRead(() => { seen++; }); // (set after the window opened: it sees only reads through Memory)
    regs.csLo(); regs.ipLo(); regs.spLo();
    expect(seen).toBe(0);
    regs.setSp(1, 2); // a write closes the window
    regs.ipLo();
    expect(seen).toBe(1);
    regs.endReads();
  });
});
