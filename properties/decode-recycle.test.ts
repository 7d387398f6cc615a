import { describe, expect, test } from "vitest";
import fc from "fast-check";
import { Journal, Machine, Perm } from "../src/index.js";
import { codeFrom, type PoolInsn, runCode } from "./support/code-pool.js";

// A page mapped inside a journal and rolled back is recycled with its decode-cache array kept,
// emptied at the offsets the decode cache recorded (Page.decodedAt: every instruction placed,
// also those placed ahead in `follow`). Twin machines: code run on such a recycled page must
// run as on a fresh machine — no instruction of the page's previous life may survive.

const KEY = 0xffffffff90000, AT = 0xffffffff90000000n;

/** Short and long position-independent instructions without memory accesses (64-bit). */
const POOL: readonly PoolInsn[] = [
  [[0x48, 0xb8], 8], [[0x48, 0xb9], 8], [[0x66, 0x66, 0x66, 0x48, 0xba], 8], // movabs
  [[0x48, 0x81, 0xc1], 4], [[0x05], 4], [[0xb8], 4], [[0xbb], 4], // add/mov imm32
  [[0x90], 0], [[0x01, 0xc8], 0], [[0x31, 0xd3], 0], [[0xf7, 0xd0], 0],
];
const seq = codeFrom(POOL, 8);
const run = (m: Machine, at: bigint): unknown => runCode(m, at, 50);

describe("decode cache on recycled pages", () => {
  test("x86_64: code laid on a page recycled by rollback runs as on a fresh machine", () => {
    fc.assert(fc.property(fc.array(fc.tuple(seq, fc.integer({ min: 0, max: 40 })), { minLength: 2, maxLength: 4 }), (lays) => {
      const m = new Machine({ bits: 64 }), j = new Journal();
      m.mem.journal = j;
      for (const [code, off] of lays) {
        const mark = j.mark();
        m.mem.mapPage(KEY, Perm.R | Perm.X); // (the page the last rollback recycled, after the first)
        m.mem.loadAt((0x90000000 + off) | 0, -1, code, code.length, true);
        const got = run(m, AT + BigInt(off));
        const fresh = new Machine({ bits: 64 });
        fresh.map(AT, 0x1000, Perm.R | Perm.X);
        fresh.load(AT + BigInt(off), code);
        expect(got).toEqual(run(fresh, AT + BigInt(off)));
        m.mem.rollback(mark);
      }
    }), { numRuns: 300 });
  });
});

// An Insn holds no address (insn.ts): the decode cache places one object per position-
// independent instruction wherever its bytes are, but gives PUSH and POP one each per address,
// because the run loop keeps a fused stack run on the instruction it starts at. Relative
// branches run one executor per form that reads Insn.disp. Twin machines: several programs
// laid at once in one page (the same bytes at many addresses, pushes and pops followed by
// other instructions at each), run one after another in random order (twice each), and again
// after the page is recycled by rollback with them laid elsewhere: with fused stack runs as by
// default, and one instruction at a time (Cpu.fuseStacks off) — they must agree.

/** Pieces: pushes and pops (stack width, not rSP), short and long relative branches over a byte or two, ALU. */
const PIECES: readonly (readonly number[])[] = [
  [0x50], [0x51], [0x53], [0x56], [0x57], [0x41, 0x50], // push
  [0x58], [0x59], [0x5b], [0x5e], [0x41, 0x58], // pop
  [0xeb, 0x02, 0x01, 0xc8], [0x74, 0x02, 0x01, 0xd1], [0x75, 0x01, 0x90], // jmp/je/jne over an add or a nop
  [0xe9, 0x01, 0x00, 0x00, 0x00, 0x90], [0x0f, 0x84, 0x02, 0x00, 0x00, 0x00, 0x01, 0xc8],
  [0xe8, 0x00, 0x00, 0x00, 0x00], // call to the next instruction (a push)
  [0x01, 0xc8], [0x31, 0xd3], [0x48, 0xff, 0xc6], [0x90],
];
const program = fc.array(fc.integer({ min: 0, max: PIECES.length - 1 }), { minLength: 1, maxLength: 10 })
  .map((s) => [...s.flatMap((i) => PIECES[i]), 0xf4]);
const STACK = 0x10000n;

function twin(fuse: boolean): Machine {
  const m = new Machine({ bits: 64 }), j = new Journal();
  m.mem.journal = j;
  m.map(STACK, 0x1000, Perm.R | Perm.W);
  m.load(STACK, Uint8Array.from({ length: 0x1000 }, (_, i) => (i * 29 + 7) & 0xff));
  m.cpu.fuseStacks = fuse;
  return m;
}

function runFrom(m: Machine, at: bigint, seed: number): unknown {
  for (let i = 0; i < 8; i++) m.cpu.setReg(i, BigInt(seed * (i + 3)) & 0xffffn);
  m.cpu.sp = STACK + 0x800n;
  m.cpu.flags = 0x2 | (seed & 0x40); // (ZF for the first Jcc)
  m.cpu.rip = at;
  const r = m.run({ maxSteps: 100 });
  return { reason: r.reason, steps: r.steps, rip: m.cpu.rip, regs: [0, 1, 2, 3, 4, 5, 6, 7].map((i) => m.cpu.reg(i)), stack: Array.from(m.mem.readBytes(STACK + 0x700n, 0x100)) };
}

describe("decode cache: one Insn at many addresses", () => {
  test("x86_64: programs sharing bytes in one page, pushes and pops among them, run fused as one at a time, also on a recycled page", () => {
    const lays = fc.array(fc.tuple(fc.array(program, { minLength: 2, maxLength: 5 }), fc.array(fc.nat(), { minLength: 1, maxLength: 10 }),
      fc.integer({ min: 0, max: 3000 })), { minLength: 1, maxLength: 3 });
    fc.assert(fc.property(lays, (ls) => {
      const ms = [twin(true), twin(false)];
      for (const [progs, order, start] of ls) {
        const marks = ms.map((m) => (m.mem.journal as Journal).mark());
        const at: bigint[] = [];
        let off = start;
        for (const p of progs) { at.push(AT + BigInt(off)); off += p.length + 3; }
        const runs = ms.map((m) => {
          m.mem.mapPage(KEY, Perm.R | Perm.X);
          progs.forEach((p, i) => m.mem.loadAt(Number(BigInt.asIntN(32, at[i])), -1, p, p.length, true));
          return [...order, ...order].map((k, i) => runFrom(m, at[k % progs.length], i));
        });
        expect(runs[0]).toEqual(runs[1]);
        ms.forEach((m, i) => m.mem.rollback(marks[i]));
      }
    }), { numRuns: 200 });
  });
});

describe("the next instruction's address (Insn holds none: the run loop adds len)", () => {
  /** [bytes, instructions]: mode-neutral (no REX), pushes and pops in runs the loop fuses. */
  const STRAIGHT: readonly (readonly [readonly number[], number])[] = [
    [[0x90], 1], [[0x01, 0xc8], 1], [[0xff, 0xc6], 1], [[0x50], 1], [[0x58], 1], [[0x05, 1, 2, 3, 4], 1],
    [[0x50, 0x53, 0x56], 3], [[0x58, 0x5b], 2],
  ];
  test("64-bit: straight code across 2^32 runs on into the high half; 32-bit: across 2^32 wraps to 0", () => {
    fc.assert(fc.property(fc.array(fc.constantFrom(...STRAIGHT), { minLength: 1, maxLength: 12 }),
      fc.integer({ min: 1, max: 40 }), fc.boolean(), fc.boolean(), (pieces, back, wide, aligned) => {
        const code = [...pieces.flatMap((p) => p[0]), 0xf4];
        const m = new Machine({ bits: wide ? 64 : 32 });
        m.map(STACK, 0x1000, Perm.R | Perm.W);
        m.cpu.sp = STACK + 0x800n;
        if (wide) m.map(0xfffff000n, 0x2000, Perm.R | Perm.X);
        else { m.map(0xfffff000n, 0x1000, Perm.R | Perm.X); m.map(0n, 0x1000, Perm.R | Perm.X); }
        // (at an instruction boundary: fused pushes or pops may end right at 2^32; always so in
        // 32-bit mode — an instruction across the wrap is out of scope here)
        if (!wide || aligned) back = pieces.slice(0, 1 + (back % pieces.length)).flatMap((p) => p[0]).length;
        const at = 0x100000000n - BigInt(back), end = at + BigInt(code.length);
        if (wide) m.load(at, code);
        else { const k = Math.min(back, code.length); m.load(at, code.slice(0, k)); if (k < code.length) m.load(0n, code.slice(k)); }
        const steps = pieces.reduce((n, p) => n + p[1], 1);
        for (let i = 0; i < 2; i++) { // (the second time decoded: pushes and pops run fused)
          m.cpu.rip = at;
          m.cpu.sp = STACK + 0x800n;
          const r = m.run({ maxSteps: 50 });
          expect({ reason: r.reason, steps: r.steps, rip: m.cpu.rip }).toEqual({ reason: "hlt", steps, rip: wide ? end : end & 0xffffffffn });
        }
      }), { numRuns: 300 });
  });
});
