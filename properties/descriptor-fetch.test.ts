import { describe, expect, test } from "vitest";
import fc from "fast-check";
import { createHash } from "node:crypto";
import { encodeDescriptor, Machine, Perm, SEL32 } from "../src/machine/index.js";

// segments.ts fetchDescriptor reads a descriptor's two dwords with one page look-up when
// nothing can tell it from two reads (a supervisor access, no read watch, the 8 bytes in one
// page); otherwise dword by dword. A read watch forces the dword-by-dword path, so the same
// segment loads on two identical machines, one read-watched, must end in the same state,
// memory (the accessed bits the loads set) and events — with the GDT anywhere (descriptors
// across a page end, above an unmapped page: #PF on the second dword), any limit, and
// random descriptors (present or not, code or data, any DPL: #GP, #NP, #SS).

const CODE = 0xc1000000n, HANDLER = 0xc1001000n, STACK = 0xc2000000n, GDT_AREA = 0xc3000000n;
const N = 48; // descriptors in the table

interface Case {
  readonly shift: number; // the GDT's base offset in its first page
  readonly second: boolean; // whether the page after it is mapped
  readonly limit: number;
  readonly words: readonly [number, number][];
  readonly loads: readonly { readonly seg: number; readonly sel: number; readonly pop: boolean }[];
}

/** A random descriptor's dwords: mostly well-formed data/code descriptors, with random type, DPL, P, S and base. */
const descArb: fc.Arbitrary<[number, number]> = fc.tuple(fc.integer(), fc.integer({ min: 0, max: 15 }), fc.integer({ min: 0, max: 3 }), fc.boolean(), fc.integer({ min: 0, max: 7 }), fc.integer({ min: 0, max: 255 }))
  .map(([lo, type, dpl, p, s, flags]) => [lo | 0, ((flags & 0xf0) << 16) | (type << 8) | ((s !== 0 ? 1 : 0) << 12) | (dpl << 13) | ((p ? 1 : 0) << 15)]);

const caseArb: fc.Arbitrary<Case> = fc.record({
  shift: fc.oneof(fc.integer({ min: 0, max: 4095 }), fc.integer({ min: 4096 - 8 * N, max: 4095 }), fc.integer({ min: 0, max: 7 }).map((k) => 4096 - 8 * 20 + k)),
  second: fc.integer({ min: 0, max: 3 }).map((n) => n !== 0),
  limit: fc.oneof(fc.constant(8 * N - 1), fc.integer({ min: 0, max: 8 * N + 16 })),
  words: fc.array(descArb, { minLength: N, maxLength: N }),
  loads: fc.array(fc.record({
    seg: fc.constantFrom(0, 2, 3, 4, 5), // ES, SS, DS, FS, GS
    sel: fc.oneof(fc.integer({ min: 0, max: 8 * N + 24 }), fc.constantFrom(SEL32.KERNEL_DS, SEL32.USER_DS, 0x7c, 0x33)),
    pop: fc.boolean(),
  }), { minLength: 1, maxLength: 12 }),
});

/** The program: each load as `mov $sel, %ax; mov %ax, %sreg` or `push $sel; pop %sreg`, then HLT. */
function program(c: Case): number[] {
  const out: number[] = [];
  const popOp: Record<number, number[]> = { 0: [0x07], 2: [0x17], 3: [0x1f], 4: [0x0f, 0xa1], 5: [0x0f, 0xa9] };
  for (const l of c.loads) {
    if (l.pop) out.push(0x68, l.sel & 0xff, (l.sel >> 8) & 0xff, 0, 0, ...popOp[l.seg]);
    else out.push(0x66, 0xb8, l.sel & 0xff, (l.sel >> 8) & 0xff, 0x8e, 0xc0 | (l.seg << 3));
  }
  out.push(0xf4);
  return out;
}

function run(c: Case, watched: boolean): string {
  const m = new Machine({ bits: 32 });
  m.map(CODE, 0x1000, Perm.R | Perm.X).map(HANDLER, 0x1000, Perm.R | Perm.X).map(STACK, 0x2000);
  m.map(GDT_AREA, 0x1000);
  if (c.second) m.map(GDT_AREA + 0x1000n, 0x1000);
  m.load(HANDLER, new Uint8Array(32).fill(0xf4));
  for (let v = 0; v < 32; v++) m.setGate(v, { handler: HANDLER + BigInt(v) });
  // the table: random descriptors, Linux's kernel and user segments at their places (delivery of
  // a fault looks the gate's CS up in it); as many bytes as the mapped pages hold
  const base = GDT_AREA + BigInt(c.shift);
  const room = (c.second ? 0x2000 : 0x1000) - c.shift;
  const bytes = new Uint8Array(Math.min(8 * N, room));
  const dv = new DataView(bytes.buffer);
  const fixed: Record<number, [number, number]> = {
    [SEL32.KERNEL_CS >> 3]: encodeDescriptor({ kind: "code", dpl: 0, present: true }),
    [SEL32.KERNEL_DS >> 3]: encodeDescriptor({ kind: "data", dpl: 0, present: true, writable: true }),
    [SEL32.USER_DS >> 3]: encodeDescriptor({ kind: "data", dpl: 3, present: true, writable: true }),
  };
  for (let i = 1; i < N; i++) {
    const [lo, hi] = fixed[i] ?? c.words[i];
    for (let k = 0; k < 4; k++) {
      if (8 * i + k < bytes.length) dv.setUint8(8 * i + k, (lo >>> (8 * k)) & 0xff);
      if (8 * i + 4 + k < bytes.length) dv.setUint8(8 * i + 4 + k, (hi >>> (8 * k)) & 0xff);
    }
  }
  m.load(base, bytes);
  m.load(CODE, program(c));
  const cpu = m.cpu;
  cpu.setGdtr(true, Number(BigInt.asIntN(32, base)), c.limit);
  cpu.rip = CODE;
  cpu.sp = STACK + 0x1000n;
  const events: string[] = [];
  m.onException((_c, e) => { events.push(`${e.name}:${e.errorCode ?? "-"}:${e.cr2 ?? "-"}:${e.detail ?? ""}`); });
  if (watched) m.onRead(() => undefined);
  const r = m.run({ maxSteps: 200 });
  const pages = [...m.mem.pages.entries()].sort((x, y) => x[0] - y[0]).map(([k, p]) => `${k}:${createHash("md5").update(p.data).digest("hex")}`);
  return JSON.stringify({
    r: [r.reason, r.steps, r.detail], events, pages,
    lo: Array.from(cpu.lo), sel: Array.from(cpu.segSel), base: Array.from(cpu.segBase), lim: Array.from(cpu.segLimit),
    attr: Array.from(cpu.segAttr), hi: Array.from(cpu.segHi), rip: cpu.rip.toString(16), flags: cpu.flags, cr2: cpu.cr2.toString(16),
  });
}

describe("descriptor fetch: one page look-up ≡ two reads", () => {
  test("segment loads on a read-watched and an unwatched machine end alike (GDT anywhere, any limit, random descriptors)", () => {
    let crossing = 0, faults = 0;
    fc.assert(fc.property(caseArb, (c) => {
      const a = run(c, true), b = run(c, false);
      if (c.shift > 4096 - 8 * N) crossing++;
      if (a.includes("#")) faults++;
      expect(b).toEqual(a);
    }), { numRuns: 300 });
    // the cases reach the paths the fast path must match: a table across a page end, and faults
    expect(crossing).toBeGreaterThan(20);
    expect(faults).toBeGreaterThan(20);
  });
});
