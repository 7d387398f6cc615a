import fc from "fast-check";
import { describe, expect, test } from "vitest";
import { F, linuxGdt32, lookupDescriptor, Machine } from "../src/index.js";
import { lookupDescriptorMemo } from "../src/machine/descriptor-memo.js";
import { type Bits, EDGE_OFF, type Rig, rig } from "./support/fault-rig.js";

// IRET reads its five frame words with one page look-up when nothing can tell the difference
// (iret.ts readFrame: no read watch, the whole frame in one page); otherwise word by word.
// A read watch forces the word-by-word path, so the same IRET on two identical machines, one
// watched, must end in the same state with the same events, whatever the frame holds and
// wherever it sits (aligned or not, at a page end, running into an unmapped page).

/** Where the frame starts: an offset in a kernel stack page, or in the page before an unmapped one. */
interface Where { readonly edge: boolean; readonly off: number }
interface Frame { readonly where: Where; readonly op: "q" | "d" | "w"; readonly words: readonly bigint[] }

function frameArb(r: Rig): fc.Arbitrary<Frame> {
  const wide = r.bits === 64;
  const off = fc.oneof(fc.integer({ min: 0, max: 4095 }), fc.integer({ min: 4096 - 48, max: 4095 }), fc.integer({ min: 0, max: 511 }).map((k) => 8 * k),
    fc.integer({ min: 0, max: 11 }).map((k) => 4096 - 48 + 4 * k)); // (word-aligned frames at the page end: in or past it)
  const ip = fc.oneof(fc.constant(r.L.kcode + 0x10n), fc.constant(r.L.ucode), fc.constant(0x0000800000000000n), fc.bigInt({ min: 0n, max: wide ? (1n << 64n) - 1n : 0xffffffffn }));
  const sel = (a: number, b: number) => fc.oneof(fc.constant(a), fc.constant(b), fc.constant(0), fc.integer({ min: 0, max: 0xffff })).map(BigInt);
  const flags = fc.oneof(fc.constant(0x2 | F.IF | F.CF), fc.integer({ min: 0, max: 0x7fffffff }).map((f) => f & ~F.NT), fc.integer({ min: 0, max: 0x7fffffff })).map(BigInt);
  const sp = fc.oneof(fc.constant(r.L.kstack + 0x3000n), fc.constant(r.L.ustack + 0x1000n), fc.bigInt({ min: 0n, max: wide ? (1n << 64n) - 1n : 0xffffffffn }));
  return fc.record({
    where: fc.record({ edge: fc.boolean(), off }),
    op: wide ? fc.constantFrom("q" as const, "d" as const, "w" as const) : fc.constantFrom("d" as const, "w" as const),
    words: fc.tuple(ip, sel(r.kcs, r.ucs), flags, sp, sel(r.kds, r.uds)),
  });
}

const OPCODE = { q: [0x48, 0xcf], d: [0xcf], w: [0x66, 0xcf] } as const;

/** One IRET on a fresh rig (watched or not): the CPU state after it, its events and its stop. */
function runIret(bits: Bits, f: Frame, watched: boolean): unknown {
  const r = rig(bits);
  const m = r.m;
  const size = f.op === "q" ? 8 : f.op === "d" ? 4 : 2;
  const sp = (f.where.edge ? r.L.kdata + EDGE_OFF : r.L.kstack + 0x1000n) + BigInt(f.where.off);
  const bytes: number[] = [];
  for (const w of f.words) for (let k = 0; k < size; k++) bytes.push(Number((w >> BigInt(8 * k)) & 0xffn));
  const room = f.where.edge ? Math.min(bytes.length, 4096 - f.where.off) : bytes.length; // (the next page is not mapped)
  m.load(sp, bytes.slice(0, room));
  m.load(r.L.kcode, [...OPCODE[f.op]]);
  m.load(r.L.kcode + 0x10n, [0xf4]);
  m.cpu.rip = r.L.kcode;
  m.cpu.sp = sp;
  m.cpu.flags = 0x2;
  const reads: string[] = [];
  if (watched) m.onRead((a, n) => { reads.push(`${a}+${n}`); });
  const stop = m.cpu.step();
  return JSON.stringify({ stop, cpu: m.snapshot().cpus, events: r.events, detail: m.cpu.lastStopDetail },
    (_k, v: unknown) => (typeof v === "bigint" ? v.toString(16) : v instanceof Int32Array ? Array.from(v) : v));
}

describe("IRET's one-look-up frame read equals the word-by-word read", () => {

  for (const bits of [64, 32] as const) {
    test(`${bits}-bit: IRET/IRETD${bits === 64 ? "/IRETQ" : ""}, any frame anywhere`, () => {
      fc.assert(fc.property(frameArb(rig(bits)), (f) => {
        expect(runIret(bits, f, false)).toBe(runIret(bits, f, true));
      }), { numRuns: 300 });
    });
  }

  test("the common returns succeed both ways (the property is not only about faults)", () => {
    const r64 = rig(64);
    const f: Frame = { where: { edge: false, off: 0x800 }, op: "q", words: [r64.L.kcode + 0x10n, BigInt(r64.kcs), 0x202n, r64.L.kstack + 0x3000n, 0n] };
    const out = JSON.parse(runIret(64, f, false) as string) as { stop: unknown; events: unknown[] };
    expect(out.events).toEqual([]);
    expect(runIret(64, f, false)).toBe(runIret(64, f, true));
    const r32 = rig(32);
    const g: Frame = { where: { edge: true, off: 4096 - 12 }, op: "d", words: [r32.L.kcode + 0x10n, BigInt(r32.kcs), 0x202n, 0n, 0n] };
    const out32 = JSON.parse(runIret(32, g, false) as string) as { events: unknown[] };
    expect(out32.events).toEqual([]); // a same-privilege IRETD reads 12 bytes: the page end right after them is fine
    expect(runIret(32, g, false)).toBe(runIret(32, g, true));
  });
});

// Delivery and IRET look up their code segment through lookupDescriptorMemo (the last decoded
// in-memory descriptor kept by its dwords): it must answer what lookupDescriptor answers,
// whatever the table holds and however it changes between look-ups (and across machines).
describe("lookupDescriptorMemo equals lookupDescriptor", () => {
  test("random descriptors rewritten between look-ups, two machines, typed and in-memory tables", () => {
    const base = 0xc0100000n;
    const ms = [0, 1].map(() => { const m = new Machine({ bits: 32 }); m.map(base, 0x1000); m.setGdt(base, linuxGdt32()); return m; });
    const typed = new Machine({ bits: 64 });
    const step = fc.record({
      m: fc.integer({ min: 0, max: 1 }),
      index: fc.integer({ min: 0, max: 31 }),
      lo: fc.oneof(fc.integer({ min: -0x80000000, max: 0x7fffffff }), fc.constantFrom(0x0000ffff, 0)), // (equal low dwords with other high ones too)
      hi: fc.oneof(fc.integer({ min: -0x80000000, max: 0x7fffffff }), fc.constantFrom(0x00cf9a00, 0x00cf9b00, 0x00cf9300, 0x00cffa00, 0x00cf1a00)),
      write: fc.boolean(),
      sel: fc.integer({ min: 0, max: 0xffff }),
    });
    fc.assert(fc.property(fc.array(step, { minLength: 1, maxLength: 40 }), (steps) => {
      for (const s of steps) {
        const m = ms[s.m];
        if (s.write) {
          const b = new Uint8Array(8), dv = new DataView(b.buffer);
          dv.setInt32(0, s.lo, true); dv.setInt32(4, s.hi, true);
          m.load(base + BigInt(8 * s.index), b);
        }
        const sel = (s.sel & 0xf000) === 0 ? s.sel : (s.sel & 3) | (s.index << 3); // (mostly the entry just written; sometimes any selector)
        for (const c of [m.cpu, typed.cpu]) {
          let want: unknown, got: unknown;
          try { want = lookupDescriptor(c, sel); } catch (e) { want = String(e); }
          try { got = lookupDescriptorMemo(c, sel); } catch (e) { got = String(e); }
          expect(got).toEqual(want);
        }
      }
    }), { numRuns: 200 });
  });
});
