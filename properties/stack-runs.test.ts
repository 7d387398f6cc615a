import { describe, expect, test } from "vitest";
import fc from "fast-check";
import { Journal, Machine, Perm, saveCpu, SEL32, SEL64, type RunResult } from "../src/index.js";

// Fused stack runs (src/machine/stack-runs.ts): the run loop executes a run of pushes or pops
// as one operation. Random programs of stack instructions (members and look-alikes that are
// not: POP rSP, 16-bit pushes, DS-relative PUSH m, POP DS) and SP moves, on stacks with random
// alignment across page boundaries, unmapped / read-only / user pages, the 64-bit canonical
// edge and a carry out of RSP's low half, a nonzero SS base on i386, a stack on the code page
// (writes into decoded code), hooks and watches, `until`, step budgets that end inside runs,
// and code patched between runs, run on two identical machines: one fusing, one not
// (Cpu.fuseStacks = false). Registers, the scratch the instructions leave, memory, the
// journal's entries, its rollback, faults and step counts must be identical.

type Bits = 32 | 64;

/** One instruction's bytes (64- or 32-bit encoding). */
function insnArb(bits: Bits): fc.Arbitrary<number[]> {
  const r = fc.integer({ min: 0, max: bits === 64 ? 15 : 7 });
  const rex = (n: number, op: number): number[] => (n < 8 ? [op + n] : [0x41, op + n - 8]);
  const d32 = (v: number): number[] => [v & 0xff, (v >> 8) & 0xff, (v >> 16) & 0xff, (v >>> 24) & 0xff];
  const common: fc.Arbitrary<number[]>[] = [
    r.map((n) => rex(n, 0x50)), // push r (push rSP included)
    r.map((n) => rex(n, 0x58)), // pop r (pop rSP: not a member)
    fc.integer({ min: -128, max: 127 }).map((v) => [0x6a, v & 0xff]), // push imm8
    fc.integer().map((v) => [0x68, ...d32(v)]), // push imm32
    fc.constantFrom(0x28, 0x20, 0x10, 0x8, 0, -8, 0x7c).map((d) => [0xff, 0x74, 0x24, d & 0xff]), // push d8(%rsp)
    fc.integer({ min: -6000, max: 6000 }).map((d) => [0xff, 0xb4, 0x24, ...d32(d)]), // push d32(%rsp)
    fc.constantFrom(0x28, 0x8).map((d) => [0x3e, 0xff, 0x74, 0x24, d]), // push %ds:d8(%rsp): not a member
    fc.integer({ min: 0, max: 7 }).map((n) => [0x66, 0x50 + n]), // pushw: not a member
    fc.tuple(fc.integer({ min: 0, max: 7 }), fc.integer()).map(([n, v]) => [0xb8 + n, ...d32(v)]), // mov $imm32, r32
    fc.constant([0x90]),
    fc.constantFrom([0xfb], [0xfa]), // sti (its shadow, then a pending interrupt between two pushes), cli
  ];
  const sp = bits === 64 ? [0x48] : [];
  common.push(fc.integer({ min: 1, max: 127 }).map((v) => [...sp, 0x83, 0xc4, v])); // add $v, rSP
  common.push(fc.integer({ min: 1, max: 127 }).map((v) => [...sp, 0x83, 0xec, v])); // sub $v, rSP
  if (bits === 32) {
    common.push(fc.constantFrom([0x06], [0x0e], [0x16], [0x1e], [0x0f, 0xa0], [0x0f, 0xa8])); // push sreg
    common.push(fc.constant([0x1f])); // pop %ds: not a member (it may fault)
    common.push(fc.constantFrom(0x28, 0x8).map((d) => [0x36, 0xff, 0x74, 0x24, d])); // push %ss:d8(%esp)
  }
  // runs: pushes (or pops) back to back, now and then another instruction among them
  const pushes = fc.oneof({ weight: 8, arbitrary: common[0] }, { weight: 2, arbitrary: common[2] }, { weight: 2, arbitrary: common[4] }, { weight: 1, arbitrary: fc.oneof(...common) });
  const pops = fc.oneof({ weight: 12, arbitrary: common[1] }, { weight: 1, arbitrary: fc.oneof(...common) });
  const run = (m: fc.Arbitrary<number[]>): fc.Arbitrary<number[]> => fc.array(m, { minLength: 2, maxLength: 24 }).map((xs) => xs.flat());
  return fc.oneof({ weight: 2, arbitrary: fc.oneof(...common) }, { weight: 2, arbitrary: run(pushes) }, { weight: 2, arbitrary: run(pops) });
}

const PERMS = [undefined, Perm.R, Perm.R | Perm.W, Perm.R | Perm.W | Perm.U, Perm.R | Perm.U] as const;

interface Case {
  bits: Bits;
  prog: number[][];
  codeOff: number;
  region: number;
  perms: number[];
  spOff: number;
  onCode: boolean;
  user: boolean;
  ssBase: number;
  regs: number[];
  budgets: number[];
  untilAt: number;
  patches: { at: number; insn: number[] }[];
  hook: 0 | 1 | 2 | 3 | 4;
  /** Decode the program before running (as the kernel's stubs are after their first case). */
  warm: boolean;
  /** An external interrupt pending (IF is clear until an STI). */
  irq: boolean;
}

const caseArb = (bits: Bits): fc.Arbitrary<Case> => fc.record({
  bits: fc.constant(bits),
  prog: fc.array(insnArb(bits), { minLength: 1, maxLength: 12 }),
  codeOff: fc.oneof(fc.integer({ min: 0, max: 0x40 }), fc.integer({ min: 0xf00, max: 0xff0 })),
  region: fc.integer({ min: 0, max: 2 }),
  perms: fc.array(fc.oneof({ weight: 4, arbitrary: fc.constantFrom(2, 3) }, { weight: 1, arbitrary: fc.integer({ min: 0, max: PERMS.length - 1 }) }), { minLength: 3, maxLength: 3 }),
  spOff: fc.oneof(fc.integer({ min: 1, max: 24 }).map((n) => 0x1000 - 8 * n), fc.integer({ min: 1, max: 24 }).map((n) => 0x2000 - 4 * n),fc.integer({ min: 0xf80, max: 0x1080 }), fc.integer({ min: 0x1f80, max: 0x2080 }), fc.integer({ min: 0, max: 0x3000 })),
  onCode: fc.integer({ min: 0, max: 7 }).map((n) => n === 0),
  user: fc.integer({ min: 0, max: 4 }).map((n) => n === 0),
  ssBase: fc.oneof(fc.constant(0), fc.integer({ min: 0, max: 0xffffffff })),
  regs: fc.array(fc.integer(), { minLength: 32, maxLength: 32 }),
  budgets: fc.array(fc.oneof(fc.integer({ min: 0, max: 6 }), fc.integer({ min: 1, max: 200 })), { minLength: 2, maxLength: 10 }),
  untilAt: fc.integer({ min: -1, max: 40 }),
  patches: fc.array(fc.record({ at: fc.nat(), insn: insnArb(bits) }), { maxLength: 3 }),
  hook: fc.constantFrom(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4) as fc.Arbitrary<0 | 1 | 2 | 3 | 4>,
  warm: fc.integer({ min: 0, max: 3 }).map((n) => n !== 0),
  irq: fc.integer({ min: 0, max: 3 }).map((n) => n === 0),
});

const CODE64 = 0xffffffff81000000n, CODE32 = 0xc1000000n;
/** Stack regions (three pages): kernel; the top of the canonical lower half (the third page is non-canonical); RSP's low half carrying. */
const REGIONS64 = [0xffffc90000010000n, 0x00007fffffffe000n, 0xffffc900fffff000n];
const REGIONS32 = [0x00800000n, 0xfffff000n - 0x2000n, 0x00001000n];
const HANDLER64 = 0xffffffff82000000n, HANDLER32 = 0xc2000000n;
const SS_SEL = 0xf0, IRQ = 0x40;

interface Rig { m: Machine; log: string[]; journal: Journal; code: bigint; sp: bigint; bytes: Uint8Array }

function build(c: Case, fuse: boolean): Rig {
  const bits = c.bits;
  const m = new Machine({ bits });
  const cpu = m.cpu;
  cpu.fuseStacks = fuse;
  const codePage = bits === 64 ? CODE64 : CODE32;
  const code = codePage + BigInt(c.codeOff);
  const bytes = new Uint8Array([...c.prog.flat(), 0xf4]);
  const u = c.user ? Perm.U : 0;
  m.map(codePage, 0x2000, Perm.R | Perm.W | Perm.X | u);
  m.load(code, bytes);
  const handler = bits === 64 ? HANDLER64 : HANDLER32;
  m.map(handler, 0x1000, Perm.R | Perm.X).load(handler, [0xf4]);
  for (let v = 0; v < 32; v++) m.setGate(v, { handler });
  m.setGate(IRQ, { handler });
  if (c.irq) cpu.requestInterrupt(IRQ);
  const region = (bits === 64 ? REGIONS64 : REGIONS32)[c.region];
  for (let i = 0; i < 3; i++) {
    const p = PERMS[c.perms[i]];
    if (p !== undefined) m.map(region + BigInt(i * 0x1000), 0x1000, p);
  }
  // stack bytes to read back
  for (let i = 0; i < 3; i++) if (m.mem.isMapped(region + BigInt(i * 0x1000))) m.load(region + BigInt(i * 0x1000), Array.from({ length: 0x1000 }, (_, k) => (k * 7 + i * 13 + c.regs[k & 31]) & 0xff));
  for (let r = 0; r < (bits === 64 ? 16 : 8); r++) cpu.setReg(r, BigInt.asUintN(64, (BigInt(c.regs[2 * r]) << 32n) | BigInt(c.regs[2 * r + 1] >>> 0)));
  const top = c.onCode ? codePage + BigInt(c.codeOff + bytes.length + (c.spOff & 0x3f)) : region + BigInt(c.spOff);
  if (bits === 64) {
    if (c.user) { cpu.setCs(SEL64.USER_CS); cpu.ss = SEL64.USER_DS; }
    cpu.sp = top;
  } else {
    cpu.gdt[SS_SEL >> 3] = { kind: "data", dpl: c.user ? 3 : 0, present: true, writable: true, base: c.ssBase };
    if (c.user) cpu.setCs(SEL32.USER_CS);
    cpu.ss = SS_SEL | (c.user ? 3 : 0);
    cpu.sp = BigInt.asUintN(32, top - BigInt(c.ssBase));
  }
  cpu.rip = code;
  if (c.warm) {
    const lo = Number(BigInt.asIntN(32, code)), hi = bits === 64 ? Number(BigInt.asIntN(32, code >> 32n)) : 0;
    for (let off = 0; off < bytes.length;) off += cpu.fetch((lo + off) | 0, hi).len;
  }
  const log: string[] = [];
  if (c.hook === 1) m.onInstruction((_c, a) => { log.push(`i ${a}`); });
  if (c.hook === 2) m.onException((_c, e) => { log.push(`e ${e.name} ${e.ip}`); });
  if (c.hook === 3) m.onWrite((a, n) => { log.push(`w ${a} ${n}`); });
  if (c.hook === 4) m.onRead((a, n) => { log.push(`r ${a} ${n}`); });
  const journal = new Journal();
  m.mem.journal = journal;
  return { m, log, journal, code, sp: cpu.sp, bytes };
}

/** Everything the two machines must agree on (scratch included). */
function state(r: Rig): unknown {
  const c = r.m.cpu, mem = r.m.mem;
  return {
    cpu: saveCpu(c), icount: c.icount, th: c.th, aLo: c.aLo, aHi: c.aHi, eaHi: c.eaHi, rhi: mem.rhi, cur: [c.curLo, c.curHi],
    log: r.log.length, lastLog: r.log.slice(-3),
  };
}

function sameMemory(a: Rig, b: Rig): void {
  const pa = [...a.m.mem.pages.entries()].sort((x, y) => x[0] - y[0]);
  const pb = [...b.m.mem.pages.entries()].sort((x, y) => x[0] - y[0]);
  expect(pa.map(([k, p]) => [k, p.perm])).toEqual(pb.map(([k, p]) => [k, p.perm]));
  for (let i = 0; i < pa.length; i++) {
    const x = pa[i][1].data, y = pb[i][1].data;
    if (Buffer.compare(x, y) !== 0) {
      let k = 0;
      while (x[k] === y[k]) k++;
      expect([pa[i][0], k, x[k]]).toEqual([pa[i][0], k, y[k]]);
    }
  }
}

/**
 * What a journal says: every byte it covers with the old byte rollback restores there (the
 * first entry's), and its mapping changes and zero fills. A fused push run records its range
 * at once where the members record word by word: the shapes differ, the meaning may not.
 */
function journalMeaning(j: Journal): { bytes: Map<string, number>; maps: unknown[]; broken: boolean; nZeros: number } {
  const bytes = new Map<string, number>(), maps: unknown[] = [];
  for (let i = 0; i < j.n; i++) {
    if (j.sizes[i] === 0) { maps.push([i, j.keys[i]]); continue; }
    for (let k = 0; k < j.sizes[i]; k++) {
      const id = `${j.keys[i]}:${j.offs[i] + k}`;
      if (!bytes.has(id)) bytes.set(id, j.oldByte(i, k));
    }
  }
  return { bytes, maps: maps.map((m, q) => [q, (m as number[])[1]]), broken: j.broken, nZeros: j.nZeros };
}

function sameJournal(a: Journal, b: Journal): void {
  const x = journalMeaning(a), y = journalMeaning(b);
  expect([x.broken, x.nZeros, x.maps]).toEqual([y.broken, y.nZeros, y.maps]);
  expect([...x.bytes].sort()).toEqual([...y.bytes].sort());
}

function sameResult(x: RunResult, y: RunResult): void {
  expect({ ...x, event: x.event && { ...x.event } }).toEqual({ ...y, event: y.event && { ...y.event } });
}

/** Runs the case on both machines, comparing after every run; returns how many runs fused. */
function check(c: Case): number {
  const a = build(c, true), b = build(c, false);
  const mark = a.journal.mark();
  b.journal.mark();
  const before = a.m.mem.snapshot(); // (a snapshot makes pages shared: the journal's slow path below)
  b.m.mem.snapshot();
  let round = 0;
  for (const n of c.budgets) {
    const until = c.untilAt >= 0 && round === 0 ? a.code + BigInt(c.untilAt) : undefined;
    const ra = a.m.run({ maxSteps: n, until }), rb = b.m.run({ maxSteps: n, until });
    sameResult(ra, rb);
    expect(state(a)).toEqual(state(b));
    expect(a.log).toEqual(b.log);
    // between runs: the host patches an instruction's worth of code (both machines), then both start over
    const p = c.patches[round++];
    if (p !== undefined) {
      const at = a.code + BigInt(p.at % a.bytes.length);
      a.m.load(at, p.insn); b.m.load(at, p.insn);
    }
    // stopped (HLT at the end, a fault, a hook): both start over, from the first SP
    if (ra.reason !== "steps" && ra.reason !== "until") {
      for (const r of [a, b]) {
        r.m.cpu.rip = r.code; r.m.cpu.sp = r.sp; r.m.cpu.halted = false;
        if (c.irq && r.m.cpu.irrCount === 0) r.m.cpu.requestInterrupt(IRQ);
      }
    }
  }
  sameMemory(a, b);
  sameJournal(a.journal, b.journal);
  a.m.mem.rollback(mark); b.m.mem.rollback(mark);
  sameMemory(a, b);
  // rolled back: the memory at the mark
  const now = a.m.mem.pages;
  for (const [k, p] of before.pages) expect(Buffer.compare(now.get(k)!.data, p.data)).toBe(0);
  expect(b.m.cpu.fusedRuns).toBe(0);
  return a.m.cpu.fusedRuns;
}

describe("fused stack runs execute exactly as their instructions one by one", () => {
  for (const bits of [64, 32] as const) {
    test(`${bits}-bit: registers, scratch, memory, journal and its rollback, faults, steps`, () => {
      let fused = 0, cases = 0, casesFused = 0;
      fc.assert(fc.property(caseArb(bits), (c) => {
        const f = check(c);
        cases++; fused += f; if (f > 0) casesFused++;
      }), { numRuns: 400 });
      // the property bites only if fusion happens often
      expect(casesFused).toBeGreaterThan(cases / 5);
      expect(fused).toBeGreaterThan(cases / 2);
    });
  }

  test("a pop run that ends where RSP's low half carries (and pushes from there back down)", () => {
    for (let n = 2; n <= 16; n++) {
      const pops = Array.from({ length: n }, (_, i) => [0x58 + (i % 4)]);
      const pushes = Array.from({ length: n }, (_, i) => [0x50 + (i % 8)]);
      const c: Case = {
        bits: 64, prog: [...pops, ...pushes], codeOff: 0, region: 2, perms: [2, 2, 2], spOff: 0x1000 - 8 * n, onCode: false, user: false,
        ssBase: 0, regs: Array.from({ length: 32 }, (_, i) => i * 0x01010101), budgets: [200, 200, 200], untilAt: -1, patches: [], hook: 0, warm: true, irq: false,
      };
      expect(check(c)).toBeGreaterThan(0);
    }
  });

  test("a run of 15 pushes and 15 pops (PUSH_AND_CLEAR_REGS / POP_REGS) is one fused run each", () => {
    const m = new Machine({ bits: 64 });
    m.map(CODE64, 0x1000, Perm.R | Perm.X).map(0xffffc90000000000n, 0x2000);
    const regs = [7, 6, 2, 1, 0, 8, 9, 10, 11, 3, 5, 12, 13, 14, 15];
    const pushes = regs.flatMap((r) => (r < 8 ? [0x50 + r] : [0x41, 0x50 + r - 8]));
    const pops = [...regs].reverse().flatMap((r) => (r < 8 ? [0x58 + r] : [0x41, 0x58 + r - 8]));
    const prog = [...pushes, 0x31, 0xc0, ...pops, 0xeb, 0x100 - (pushes.length + 2 + pops.length + 2)]; // …; xor %eax,%eax; …; jmp back
    m.load(CODE64, prog);
    m.cpu.rip = CODE64; m.cpu.sp = 0xffffc90000001800n;
    for (let r = 0; r < 16; r++) if (r !== 4) m.cpu.setReg(r, BigInt(r) * 0x1111n);
    const r1 = m.run({ maxSteps: 32 }); // first pass: decodes, one by one
    expect([r1.steps, m.cpu.fusedRuns, m.cpu.rip]).toEqual([32, 0, CODE64]);
    const r2 = m.run({ maxSteps: 32 }); // then: 15 pushes (one run), xor, 15 pops (one run), jmp
    expect([r2.steps, m.cpu.fusedRuns, m.cpu.rip, m.cpu.icount]).toEqual([32, 2, CODE64, 64]);
    expect(m.cpu.sp).toBe(0xffffc90000001800n);
    expect(m.cpu.reg(0)).toBe(0n);
    expect(m.cpu.reg(15)).toBe(15n * 0x1111n);
  });
});
