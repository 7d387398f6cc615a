import { describe, expect, test } from "vitest";
import fc from "fast-check";
import { copyRegs, type CpuState, diffCpu, diffMemory, SEG_STATE_LEN, shiftRegs } from "../src/machine/state.js";
import { setCaseRegs, setCaseRegsLoop } from "../src/oracle/case-regs.js";
import { sameRegs } from "../src/oracle/engine.js";
import { bytesEqual, segByte, SegmentBuffer } from "../src/oracle/segment.js";
import { Journal } from "../src/machine/journal.js";
import { Machine, Perm } from "../src/machine/index.js";

// The check engine's unrolled copies and compares (round 7) against their general forms:
// the case's registers into a CPU, a CPU state's GPR halves copied, two saved states'
// registers compared, a word of memory compared.

/** Any BigInt (negative, past 2^64: the slot stores it modulo 2^64), edges weighted in. */
const anyBig = fc.oneof(
  fc.bigInt({ min: -(1n << 70n), max: 1n << 70n }),
  fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }),
  fc.constantFrom(0n, -1n, (1n << 63n), (1n << 64n) - 1n, 1n << 64n, 0xffffffffn, 0x80000000n),
);
const halves = fc.int32Array({ minLength: 16, maxLength: 16 });

describe("setCaseRegs ≡ the register-by-register loop", () => {
  test("64- and 32-bit, any length, any values, over any previous contents", () => {
    fc.assert(fc.property(fc.array(anyBig, { maxLength: 20 }), fc.boolean(), halves, halves, (regs, wide, lo0, hi0) => {
      const a = [lo0.slice(), hi0.slice()], b = [lo0.slice(), hi0.slice()];
      setCaseRegs(a[0], a[1], regs, wide);
      setCaseRegsLoop(b[0], b[1], regs, wide);
      expect(Array.from(a[0])).toEqual(Array.from(b[0]));
      expect(Array.from(a[1])).toEqual(Array.from(b[1]));
    }), { numRuns: 400 });
  });

  test("the halves are the value modulo 2^64 (64-bit), modulo 2^32 with a zero high half (32-bit); rSP untouched", () => {
    fc.assert(fc.property(fc.array(anyBig, { minLength: 16, maxLength: 16 }), fc.boolean(), (regs, wide) => {
      const lo = new Int32Array(16).fill(7), hi = new Int32Array(16).fill(7);
      setCaseRegs(lo, hi, regs, wide);
      for (let i = 0; i < 16; i++) {
        if (i === 4 || (!wide && i >= 8)) { expect([lo[i], hi[i]]).toEqual([7, 7]); continue; }
        const v = BigInt.asUintN(64, regs[i]);
        expect(lo[i]).toBe(Number(BigInt.asIntN(32, v)));
        expect(hi[i]).toBe(wide ? Number(BigInt.asIntN(32, v >> 32n)) : 0);
      }
    }), { numRuns: 200 });
  });

  test("a non-BigInt register throws as the loop does, after the same registers", () => {
    for (const [wide, bad] of [[true, 9], [true, 0], [false, 6], [false, 3]] as const) {
      const regs = Array.from({ length: 16 }, (_, i) => BigInt(i + 1)) as unknown[];
      regs[bad] = bad;
      const a = [new Int32Array(16), new Int32Array(16)], b = [new Int32Array(16), new Int32Array(16)];
      expect(() => setCaseRegs(a[0], a[1], regs as bigint[], wide)).toThrow(TypeError);
      expect(() => setCaseRegsLoop(b[0], b[1], regs as bigint[], wide)).toThrow(TypeError);
      expect(Array.from(a[0])).toEqual(Array.from(b[0]));
      expect(Array.from(a[1])).toEqual(Array.from(b[1]));
    }
  });
});

describe("shiftRegs ≡ two copyRegs", () => {
  test("16 each: the saved copy is the old contents, the registers the next ones (equal or not, register by register)", () => {
    fc.assert(fc.property(halves, halves, fc.array(fc.boolean(), { minLength: 16, maxLength: 16 }), halves, (cur0, next0, same, save0) => {
      const next = next0.slice();
      for (let i = 0; i < 16; i++) if (same[i]) next[i] = cur0[i]; // (registers the run left alone)
      const a = [save0.slice(), cur0.slice()], b = [save0.slice(), cur0.slice()];
      shiftRegs(a[0], a[1], next);
      copyRegs(b[0], b[1]); copyRegs(b[1], next);
      expect(Array.from(a[0])).toEqual(Array.from(b[0]));
      expect(Array.from(a[1])).toEqual(Array.from(b[1]));
    }), { numRuns: 300 });
  });

  test("other lengths as the two copies (their RangeError included)", () => {
    fc.assert(fc.property(fc.int32Array({ minLength: 15, maxLength: 17 }), fc.int32Array({ minLength: 15, maxLength: 17 }), fc.int32Array({ minLength: 15, maxLength: 17 }), (s0, c0, n) => {
      const a = [s0.slice(), c0.slice()], b = [s0.slice(), c0.slice()];
      let ea: unknown = null, eb: unknown = null;
      try { shiftRegs(a[0], a[1], n); } catch (e) { ea = (e as Error).constructor; }
      try { copyRegs(b[0], b[1]); copyRegs(b[1], n); } catch (e) { eb = (e as Error).constructor; }
      expect(ea).toBe(eb);
      expect([Array.from(a[0]), Array.from(a[1])]).toEqual([Array.from(b[0]), Array.from(b[1])]);
    }), { numRuns: 300 });
  });
});

describe("copyRegs ≡ TypedArray.prototype.set", () => {
  test("16 into 16: every element", () => {
    fc.assert(fc.property(halves, halves, (src, dst0) => {
      const a = dst0.slice(), b = dst0.slice();
      copyRegs(a, src); b.set(src);
      expect(Array.from(a)).toEqual(Array.from(b));
    }), { numRuns: 100 });
  });

  test("other lengths through set (its RangeError included)", () => {
    fc.assert(fc.property(fc.int32Array({ maxLength: 20 }), fc.int32Array({ minLength: 15, maxLength: 18 }), (src, dst0) => {
      const a = dst0.slice(), b = dst0.slice();
      let ea: unknown = null, eb: unknown = null;
      try { copyRegs(a, src); } catch (e) { ea = (e as Error).constructor; }
      try { b.set(src); } catch (e) { eb = (e as Error).constructor; }
      expect(ea).toBe(eb);
      expect(Array.from(a)).toEqual(Array.from(b));
    }), { numRuns: 400 });
  });
});

function state(bits: 32 | 64, lo: Int32Array, hi: Int32Array): CpuState {
  return { bits, lo, hi, ripLo: 0, ripHi: 0, flags: 2, cs: 0x10, ss: 0x18, seg: new Int32Array(SEG_STATE_LEN), cr2: 0n, halted: false };
}

describe("sameRegs ≡ diffCpu finds nothing", () => {
  test("two states differing in any bits of any GPR half (or not at all)", () => {
    fc.assert(fc.property(fc.constantFrom(32 as const, 64 as const), halves, halves, fc.integer({ min: -1, max: 31 }), fc.integer({ min: 0, max: 31 }), (bits, lo, hi, which, bit) => {
      const lo2 = lo.slice(), hi2 = hi.slice();
      if (which >= 0) (which < 16 ? lo2 : hi2)[which & 15] ^= 1 << bit;
      const a = state(bits, lo, hi), b = state(bits, lo2, hi2);
      expect(sameRegs(a, b)).toBe(diffCpu(a, b).length === 0);
    }), { numRuns: 600 });
  });
});

describe("bytesEqual ≡ a byte loop", () => {
  test("8-byte words and other sizes, equal or one byte off, anywhere in the arrays", () => {
    const size = fc.oneof(fc.constant(8), fc.integer({ min: 0, max: 12 }));
    fc.assert(fc.property(fc.uint8Array({ minLength: 1, maxLength: 40 }), size, fc.nat(), fc.nat(), fc.oneof(fc.constant(-1), fc.integer({ min: 0, max: 11 })), (base, n, i0, j0, flip) => {
      const a = new Uint8Array(48), b = new Uint8Array(48);
      const i = i0 % 40, j = j0 % 40;
      for (let k = 0; k < 48; k++) a[k] = base[k % base.length];
      for (let k = 0; k < n && i + k < 48 && j + k < 48; k++) b[j + k] = a[i + k];
      if (flip >= 0 && flip < n && j + flip < 48) b[j + flip] ^= 0x40;
      let same = true;
      for (let k = 0; k < n; k++) if (a[i + k] !== b[j + k]) same = false;
      expect(bytesEqual(a, i, b, j, n)).toBe(same);
    }), { numRuns: 600 });
  });
});

// Round 8: realDone's capture + undo in one pass (SegmentBuffer.take) and armSite's one-byte
// poke (Memory.poke8), each against the general path on twin machines.

const DATA = 0xffffc90000200000n, TEXT = 0xffffffff81000000n;
/** TEXT's low half with another high half: the same TLB slot, another page. */
const ALIAS = TEXT - (1n << 40n);
const halvesOf = (a: bigint): [number, number] => [Number(BigInt.asIntN(32, a)), Number(BigInt.asIntN(32, a >> 32n))];

/**
 * A machine with three data pages (recognisable bytes), a writable page of decoded NOPs, a journal attached
 * (`many`: more instructions decoded in that page first than it keeps the offsets of).
 */
function journaled(many = false): { m: Machine; j: Journal } {
  const m = new Machine({ bits: 64 });
  m.map(DATA, 0x3000, Perm.R | Perm.W);
  m.load(DATA, Uint8Array.from({ length: 0x3000 }, (_, i) => (i * 29 + 7) & 0xff));
  m.map(TEXT - 0x1000n, 0x2000, Perm.R | Perm.W | Perm.X);
  m.map(ALIAS - 0x1000n, 0x2000, Perm.R | Perm.X);
  m.load(TEXT - 64n, new Array<number>(128).fill(0x90));
  m.load(TEXT - 3n, [0xb8, 1, 2]); // mov $imm32,%eax running into the TEXT page
  if (many) { m.load(TEXT - 0x400n, new Array<number>(0x3c0).fill(0x90)); for (let i = -0x400; i < -0x100; i++) m.cpu.fetch(...halvesOf(TEXT + BigInt(i))); }
  // decoded NOPs before TEXT and the MOV running into it (TEXT's page: no code of its own, but code running in)
  for (let i = -63; i <= -3; i += 3) m.cpu.fetch(...halvesOf(TEXT + BigInt(i)));
  const j = new Journal();
  m.mem.journal = j;
  return { m, j };
}

const op = fc.record({
  kind: fc.constantFrom("w8", "w16", "w32", "w64", "w64", "w64", "same", "text", "load", "map", "snapshot"),
  at: fc.integer({ min: 0, max: 0x2ff8 }),
  v: fc.integer(),
});
type Op = typeof op extends fc.Arbitrary<infer T> ? T : never;

/** One write (or other memory change) of a run; "same" rewrites the last address written. */
function apply(m: Machine, o: Op, last: { at: number }): void {
  const mem = m.mem;
  const at = o.kind === "same" ? last.at : o.kind === "w64" ? o.at & ~3 : o.at;
  last.at = at;
  const [lo, hi] = halvesOf(DATA + BigInt(at));
  switch (o.kind) {
    case "w8": mem.write8(lo, hi, o.v & 0xff); break;
    case "w16": mem.write16(lo, hi, o.v & 0xffff); break;
    case "w32": mem.write32(lo, hi, o.v); break;
    case "w64": case "same": mem.write64(lo, hi, o.v, ~o.v); break;
    case "text": { // code written and decoded again (as a run that patches and runs code): undoing it must drop that decode
      const a = (o.at & 1) !== 0 ? TEXT - 4n + BigInt((o.at >> 1) & 7) : TEXT - 64n + BigInt((o.at >> 1) & 127), [tl, th] = halvesOf(a);
      mem.write32(tl, th, o.v);
      // (in the page before TEXT, which holds code; in TEXT, only the instruction running into it, which keeps it without code of its own)
      for (const x of a < TEXT ? [a, TEXT - 3n] : [TEXT - 3n]) try { m.cpu.fetch(...halvesOf(x)); } catch { /* (bytes that fault when fetched: nothing decoded) */ }
      break;
    }
    case "load": m.load(DATA + BigInt(Math.min(o.at, 0x2f00)), new Uint8Array(9 + (o.at & 63)).fill(o.v & 0xff)); break;
    case "map": m.map(DATA + 0x3000n + BigInt(o.at & 0x1000), 1, Perm.R | Perm.W); break;
    case "snapshot": m.snapshot(); break;
  }
}

/** What a segment says, entry by entry (bytes through segByte; a mapping change's permissions). */
function meaning(s: SegmentBuffer): unknown[] {
  const out: unknown[] = [];
  for (let i = 0; i < s.n; i++) {
    const size = s.sizes[i];
    out.push([s.keys[i], s.offs[i], size, size === 0 ? s.at[i] : Array.from({ length: size }, (_, k) => segByte(s, i, k))]);
  }
  return out;
}

/** Which offsets from TEXT - 64 to TEXT + 64 hold a decoded instruction. */
const decodedAt = (m: Machine): number[] => {
  const out: number[] = [];
  for (let i = -64; i < 64; i++) {
    const a = TEXT + BigInt(i);
    if (m.mem.pageAt(Number(a >> 12n))?.code?.[Number(a & 0xfffn)] !== undefined) out.push(i);
  }
  return out;
};

describe("SegmentBuffer.take ≡ capture, then Memory.rollback", () => {
  test("any run of writes after the mark (overlapping, unaligned, across pages, on decoded code, mappings, snapshots): the same segment, memory, journal and code", () => {
    let fast = 0, runs = 0;
    fc.assert(fc.property(fc.array(op, { maxLength: 4 }), fc.array(op, { minLength: 1, maxLength: 6 }), fc.array(op, { maxLength: 4 }), (pre, run, after) => {
      const twins = [journaled(), journaled()];
      const segs = [new SegmentBuffer(), new SegmentBuffer()];
      let took = false;
      for (const [t, { m, j }] of twins.entries()) {
        const last = { at: 0 };
        for (const o of pre) apply(m, o, last);
        const mark = j.mark();
        for (const o of run) apply(m, o, last);
        if (t === 0) { segs[0].capture(m.mem, j, mark); m.mem.rollback(mark); }
        else if (!(took = segs[1].take(m.mem, j, mark))) { segs[1].capture(m.mem, j, mark); m.mem.rollback(mark); }
      }
      runs++; if (took) fast++;
      const [a, b] = twins;
      expect(meaning(segs[1])).toEqual(meaning(segs[0]));
      expect([b.j.n, b.j.slowBelow, b.j.nb, b.m.mem.gen]).toEqual([a.j.n, a.j.slowBelow, a.j.nb, a.m.mem.gen]);
      expect(diffMemory(a.m.snapshot().mem, b.m.snapshot().mem)).toEqual([]);
      expect(decodedAt(b.m)).toEqual(decodedAt(a.m));
      // and the journal goes on as before: more writes, then back to the start
      for (const { m, j } of twins) { const last = { at: 0 }; for (const o of after) apply(m, o, last); if (!j.broken) m.mem.rollback(0); }
      expect(diffMemory(a.m.snapshot().mem, b.m.snapshot().mem)).toEqual([]);
    }), { numRuns: 300 });
    expect(fast).toBeGreaterThan(runs / 5); // (the fast path is the one checked)
  });
});

describe("Memory.poke8 ≡ loadAt of one byte", () => {
  test("anywhere near decoded code (on a page with more of it than it keeps the offsets of, or not), through a TLB or not (or one holding a page with the same low half), on a page shared with a snapshot or not, journaled or not", () => {
    fc.assert(fc.property(fc.integer({ min: -24, max: 24 }), fc.integer({ min: 0, max: 255 }), fc.constantFrom("none", "read", "fetch", "alias"), fc.boolean(), fc.boolean(), fc.boolean(), fc.boolean(), (at, v, warm, shared, journal, hook, many) => {
      const twins = [journaled(many), journaled(many)];
      const seen: string[][] = [[], []];
      const out = twins.map(({ m }, t) => {
        if (!journal) m.mem.journal = null;
        const a = TEXT + BigInt(at), [lo, hi] = halvesOf(a);
        const snap = shared ? m.snapshot() : undefined; // (a TLB slot filled after it holds a page the snapshot shares)
        if (warm === "read" && m.mem.isMapped(a)) m.mem.read8(lo, hi);
        if (warm === "fetch" && m.mem.isMapped(a)) m.cpu.fetch(lo, hi);
        if (warm === "alias") { const [al, ah] = halvesOf(a - TEXT + ALIAS); m.mem.read8(al, ah); m.cpu.fetch(al, ah); }
        if (hook) m.mem.beforeLoad = (x, n) => { seen[t].push(`${x}:${n}`); };
        let err = "none";
        try { if (t === 0) m.mem.loadAt(lo, hi, [v]); else m.mem.poke8(lo, hi, v); } catch (e) { err = (e as Error).constructor.name; }
        return { m, snap, err };
      });
      const [a, b] = out;
      expect(b.err).toBe(a.err);
      expect(seen[1]).toEqual(seen[0]);
      expect(b.m.mem.gen).toBe(a.m.mem.gen);
      expect(diffMemory(a.m.snapshot().mem, b.m.snapshot().mem)).toEqual([]);
      if (a.snap && b.snap) expect(diffMemory(a.snap.mem, b.snap.mem)).toEqual([]); // (the snapshot's page was not written)
      expect(decodedAt(b.m)).toEqual(decodedAt(a.m));
      const [ja, jb] = [twins[0].j, twins[1].j];
      expect([jb.n, jb.keys[jb.n - 1], jb.offs[jb.n - 1], jb.sizes[jb.n - 1], jb.oldByte(jb.n - 1, 0)]).toEqual([ja.n, ja.keys[ja.n - 1], ja.offs[ja.n - 1], ja.sizes[ja.n - 1], ja.oldByte(ja.n - 1, 0)]);
      // what runs there afterwards: the same instruction at every offset
      for (const { m } of out) m.mem.beforeLoad = null;
      for (let i = -64; i < 64; i++) {
        const [lo, hi] = halvesOf(TEXT + BigInt(i));
        expect(b.m.cpu.fetch(lo, hi).len).toBe(a.m.cpu.fetch(lo, hi).len);
      }
      if (journal) { a.m.mem.rollback(0); b.m.mem.rollback(0); expect(diffMemory(a.m.snapshot().mem, b.m.snapshot().mem)).toEqual([]); }
    }), { numRuns: 300 });
  });
});
