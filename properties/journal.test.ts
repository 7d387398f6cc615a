import { describe, expect, test } from "vitest";
import fc from "fast-check";
import {
  buildKernel64, diffCpu, diffMemory, emuCase, Machine, Perm, pokeInt3HandlerEmulate, prepare, runEmuCase, saveCpu,
  type EmuCase, type Variant, variantByName,
} from "../src/index.js";
import { Journal } from "../src/machine/journal.js";
import { makeDecode } from "../src/machine/decoder.js";
import { cachedDecode } from "../src/machine/decode-cache.js";

// The journal-based check engine: undo through a write journal, diff only where the runs
// wrote, decodes cached by bytes. Each part is checked against the slow, obvious version.

const BASE = 0xffffc90000000ff0n; // writes straddle the page boundary at ...1000
const CODE = 0xffffffff81000000n;

const write = fc.record({
  kind: fc.constantFrom("w8", "w16", "w32", "w64", "load", "map", "snapshot", "protect"),
  at: fc.integer({ min: 0, max: 0x2fff }),
  v: fc.integer(),
  bytes: fc.uint8Array({ minLength: 1, maxLength: 80 }),
});

describe("write journal", () => {
  test("rollback(mark) gives back exactly the memory at the mark (pages, bytes, permissions), whatever happened since", () => {
    fc.assert(fc.property(fc.array(write, { maxLength: 12 }), fc.array(write, { maxLength: 25 }), (pre, post) => {
      const m = new Machine({ bits: 64 });
      m.map(BASE & ~0xfffn, 0x2000);
      const apply = (w: (typeof pre)[number]): void => {
        const a = BASE + BigInt(w.at), mem = m.mem;
        const lo = Number(BigInt.asIntN(32, a)), hi = Number(BigInt.asIntN(32, a >> 32n));
        if (!mem.isMapped(a) || !mem.isMapped(a + 8n) || (mem.permOf(a)! & Perm.W) === 0 || (mem.permOf(a + 8n)! & Perm.W) === 0) {
          if (w.kind === "map") m.map(a, 1, Perm.R | Perm.W);
          return;
        }
        switch (w.kind) {
          case "w8": mem.write8(lo, hi, w.v & 0xff); break;
          case "w16": mem.write16(lo, hi, w.v & 0xffff); break;
          case "w32": mem.write32(lo, hi, w.v); break;
          case "w64": mem.write64(lo, hi, w.v, ~w.v); break;
          case "load": if (mem.isMapped(a + BigInt(w.bytes.length))) m.load(a, w.bytes); break;
          case "map": m.map(a + 0x1000n, 1, Perm.R | Perm.W); break;
          case "snapshot": m.snapshot(); break;
          case "protect": m.mem.protect(a, 1, Perm.R | Perm.W | Perm.X); break;
        }
      };
      for (const w of pre) apply(w);
      const j = new Journal();
      m.mem.journal = j;
      for (const w of pre.slice(0, 4)) apply(w);
      const mark = j.mark();
      const at = m.mem.snapshot();
      for (const w of post) apply(w);
      m.mem.rollback(mark);
      const now = m.mem.snapshot();
      expect([...now.pages.keys()].sort()).toEqual([...at.pages.keys()].sort());
      for (const [k, p] of at.pages) expect(now.pages.get(k)?.perm, `perm of page ${k}`).toBe(p.perm);
      expect(diffMemory(at, now)).toEqual([]);
    }));
  });

  test("decoded code is consistent after a rollback: code written, run, undone, rewritten runs the new bytes", () => {
    const m = new Machine({ bits: 64 });
    m.map(CODE, 0x2000, Perm.R | Perm.X);
    const j = new Journal();
    m.mem.journal = j;
    const run = (bytes: number[]): bigint => {
      const mark = j.mark();
      m.load(CODE + 0xffdn, bytes); // the instruction crosses into the next page
      m.cpu.rip = CODE + 0xffdn;
      expect(m.run({ maxSteps: 10 }).reason).toBe("hlt");
      const rax = m.cpu.reg(0);
      m.mem.rollback(mark);
      return rax;
    };
    for (let v = 1; v < 40; v++) expect(run([0xb8, v, 0, 0, 0, 0xf4])).toBe(BigInt(v)); // mov $v,%eax; hlt
  });
});

describe("decode cache by bytes", () => {
  // Relative branches at random addresses (page ends included) with random displacements:
  // the cached decode must be the decoder's instruction — length, next address, mnemonic,
  // and what it does to the CPU.
  const branch = fc.record({
    bits: fc.constantFrom(32 as const, 64 as const),
    form: fc.constantFrom([0xe8], [0xe9], [0xeb], [0x70], [0x74], [0x7f], [0x0f, 0x84], [0x0f, 0x8d]),
    disp: fc.integer(),
    off: fc.oneof(fc.integer({ min: 0, max: 4095 }), fc.integer({ min: 4085, max: 4095 })),
    flags: fc.integer({ min: 0, max: 0xfff }),
    high: fc.boolean(),
    low: fc.boolean(), // (a base with a small low half: backward targets borrow from the high half)
  });
  test("relative CALL/JMP/Jcc decode and execute as the decoder's", () => {
    fc.assert(fc.property(branch, (b) => {
      const short = b.form[0] === 0xeb || (b.form[0] & 0xf0) === 0x70;
      const bytes = [...b.form, ...(short ? [b.disp & 0xff] : [b.disp & 0xff, (b.disp >>> 8) & 0xff, (b.disp >>> 16) & 0xff, b.disp >>> 24])];
      const base = b.low ? (b.bits === 64 ? 0x100000000n : 0x1000n) : b.bits === 64 ? (b.high ? 0xffffffff81000000n : 0x00007fffffffe000n) : (b.high ? 0xfffff000n : 0xc1000000n);
      const addr = base + BigInt(b.off);
      const results = [false, true].map((cached) => {
        const m = new Machine({ bits: b.bits });
        m.map(base, 0x2000, Perm.R | Perm.X).map(0x10000n, 0x1000);
        m.load(addr, bytes);
        const hosts = new Map();
        const inner = makeDecode(hosts);
        const decode = cached ? cachedDecode(inner, hosts) : inner;
        const c = m.cpu;
        const lo = Number(BigInt.asIntN(32, addr)), hi = b.bits === 64 ? Number(BigInt.asIntN(32, addr >> 32n)) : 0;
        const page = m.mem.readPage(lo, hi, true, false);
        if (cached) { decode(c, lo, hi, page); page.code = null; } // the first decode teaches the form
        const ins = decode(c, lo, hi, page);
        c.sp = 0x10800n; c.flags = 0x2 | b.flags;
        const s = (lo >>> 0) + ins.len, nLo = s | 0, nHi = b.bits === 64 ? (hi + (s >= 2 ** 32 ? 1 : 0)) | 0 : 0; // (as the run loop: see Insn)
        c.ripLo = nLo; c.ripHi = nHi;
        let fault = "";
        try { ins.exec(c, ins); } catch (e) { fault = String(e); }
        return { len: ins.len, nLo, nHi, mnemonic: ins.mnemonic, bytes: Array.from(ins.bytes), fault, state: saveCpu(c), pushed: m.read64(0x107f8n) };
      });
      const [ref, got] = results;
      expect(diffCpu(ref.state, got.state)).toEqual([]);
      expect({ ...got, state: 0 }).toEqual({ ...ref, state: 0 });
    }));
  });

  test("a page reused for another address keeps no instruction decoded for the old one", () => {
    const b = prepare(variantByName("x86_64/v5.6"));
    const cases = fc.sample(emuCase(b.k.L, ["call", "jmp8"]), { numRuns: 300, seed: 11 });
    for (const c of cases) expect(runEmuCase(b, c).equal).toBe(true);
    expect(b.k.m.mem.journal).not.toBeNull();
  });
});

/** A variant whose handler also changes the byte at `where` (after emulating correctly). */
function scribbler(where: (k: ReturnType<typeof buildKernel64>) => bigint): Variant {
  return {
    name: "test/scribbler", bits: 64, frame: "idt", sites: "poke", emulates: ["call"], summary: "writes a byte somewhere",
    boot: () => buildKernel64({
      gapWords: 6,
      chain: (k) => {
        k.m.map(0xffffffff82000000n, 0x1000); // some kernel data
        return { poke: (kk, regs) => { const ok = pokeInt3HandlerEmulate(kk, regs, { ret: false, jcc: false }); const a = where(kk); kk.m.mem.writeBytes(a, [(kk.m.mem.readBytes(a, 1)[0] + 1) & 0xff]); return ok; } };
      },
    }),
  };
}

describe("the diff sees a write anywhere", () => {
  const cases = fc.sample(emuCase(prepare(variantByName("x86_64/v5.6")).k.L, ["call"]), { numRuns: 40, seed: 3 });
  test.each([
    ["kernel data outside the stack", (): bigint => 0xffffffff82000123n],
    ["the IRQ stack while the trap runs on the task stack", (): bigint => 0xffffc90000100ff0n],
    ["the interrupted stack above R", (): bigint => -1n],
  ])("a handler scribbling on %s is caught, at that address", (_what, where) => {
    let at = 0n;
    const v = scribbler((k) => {
      const w = where();
      at = w !== -1n ? w : k.m.cpu.sp + 0x800n; // (on the trap's stack; well above the interrupted SP)
      return at;
    });
    const b = prepare(v);
    for (const c0 of cases) {
      const c: EmuCase = { ...c0, stack: "task", spOffset: Math.min(c0.spOffset, 0x2000) };
      const r = runEmuCase(b, c);
      expect(r.equal).toBe(false);
      expect(r.diff.memory.map((d) => d.addr)).toEqual([at]);
    }
  });
});

describe("journal diff ≡ whole-memory diff", () => {
  for (const name of ["x86_64/v5.6", "x86_64/mutant/no-gap", "x86_32/v5.6", "x86_32/mutant/memmove-sizeof-pt-regs", "x86_64-fred/v6.9", "x86_64/v5.2"]) {
    test(name, () => {
      const b = prepare(variantByName(name));
      let unequal = 0;
      fc.assert(fc.property(emuCase(b.k.L, b.variant.emulates.length > 0 ? b.variant.emulates : ["call"]), (c) => {
        const r = runEmuCase(b, c);
        const sp = b.k.m.cpu.sp;
        const stack = c.stack === "task" ? b.k.L.stack : b.k.L.irqStack;
        const whole = diffMemory(r.afterReal.mem, r.afterEmulated.mem, [[stack, sp], [c.site, c.site + 1n]]);
        expect(r.diff.memory).toEqual(whole);
        expect(r.diff.registers).toEqual(diffCpu(r.afterReal.cpus[0], r.afterEmulated.cpus[0]));
        if (!r.equal) unequal++;
      }), { numRuns: 60 });
      if (name.includes("mutant")) expect(unequal).toBeGreaterThan(0);
    });
  }

  test("snapshots rebuilt after other cases ran (by running the case again) equal the ones read at once", () => {
    const b = prepare(variantByName("x86_64/v5.6"));
    const [c1, c2] = fc.sample(emuCase(b.k.L, ["call"]), { numRuns: 2, seed: 9 });
    const now = runEmuCase(b, c1);
    const snaps = [now.before, now.afterReal, now.afterEmulated];
    const later = runEmuCase(b, c1);
    runEmuCase(b, c2);
    const again = [later.before, later.afterReal, later.afterEmulated];
    for (let i = 0; i < 3; i++) {
      expect(Machine.diff(snaps[i], again[i]).equal).toBe(true);
    }
    // S really is the state both runs start from: the real run from `before` ends in afterReal
    b.k.m.restore(later.before);
    b.k.m.run({ maxSteps: 500 });
    expect(Machine.diff(b.k.m.snapshot(), later.afterReal).equal).toBe(true);
  });
});

test("a handler that maps memory is caught too (whole memories compared, snapshots still readable)", () => {
  const page = 0xffffffff83000000n;
  const v: Variant = {
    name: "test/mapper", bits: 64, frame: "idt", sites: "poke", emulates: ["call"], summary: "maps a page in the handler",
    boot: () => buildKernel64({
      gapWords: 6,
      chain: () => ({ poke: (kk, regs) => { const ok = pokeInt3HandlerEmulate(kk, regs, { ret: false, jcc: false }); kk.m.map(page, 0x1000); return ok; } }),
    }),
  };
  const b = prepare(v);
  for (const c of fc.sample(emuCase(b.k.L, ["call"]), { numRuns: 5, seed: 4 })) {
    const r = runEmuCase(b, c);
    expect(r.equal).toBe(false);
    expect(r.diff.memory).toEqual([{ addr: page, a: null, b: new Uint8Array(4096) }]);
    expect(r.afterEmulated.mem.pages.has(Number(page >> 12n))).toBe(true);
    expect(r.afterReal.mem.pages.has(Number(page >> 12n))).toBe(false);
  }
});
