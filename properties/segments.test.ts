import { describe, expect, test } from "vitest";
import fc from "fast-check";
import { Code, Register as R } from "iced-x86";
import { Assembler, type Mem, mem, reg } from "../src/asm/index.js";
import {
  decodeDescriptor, encodeDescriptor, type ExceptionEvent, type Gdt, linuxGdt32, Machine, Perm, SEG, SEG_UNUSABLE, SEL32,
  type SegmentDescriptor,
} from "../src/machine/index.js";

// Segment bases in 32-bit protected mode (SDM Vol. 3A §3.4–3.5, Vol. 2 MOV/POP/LSS/IRET):
// descriptors in a GDT in simulated memory, the hidden base added to every address, SS for
// the stack, and the protected-mode checks on every load.

const CODE = 0xc1000000n, STACK = 0xc2000000n, GDT = 0xc3000000n, HANDLER = 0xc1001000n;
/** Extra GDT entries the tests use, from index 20 (selector 0xa0) up. */
const EXTRA = 20;
const sel = (i: number, rpl = 0): number => ((EXTRA + i) << 3) | rpl;

/** A 32-bit machine with Linux's GDT in memory plus `extra` descriptors at selectors 0xa0, 0xa8, …; gates 0–31 to `hlt`. */
function machine(extra: readonly (SegmentDescriptor | undefined)[] = [], code?: (a: Assembler) => void): Machine {
  const m = new Machine({ bits: 32 });
  m.map(CODE, 0x2000, Perm.R | Perm.X).map(STACK, 0x4000).map(GDT, 0x1000);
  const g: Gdt = linuxGdt32();
  extra.forEach((d, i) => { g[EXTRA + i] = d; });
  m.setGdt(GDT, g);
  m.load(HANDLER, new Uint8Array(32).fill(0xf4));
  for (let v = 0; v < 32; v++) m.setGate(v, { handler: HANDLER + BigInt(v) });
  if (code !== undefined) {
    const a = new Assembler(32);
    code(a);
    m.load(CODE, a.assemble(CODE).bytes);
  }
  m.cpu.rip = CODE;
  m.cpu.sp = STACK + 0x2000n;
  return m;
}

const data = (base: number, o: Partial<SegmentDescriptor> = {}): SegmentDescriptor => ({ kind: "data", dpl: 0, present: true, writable: true, base, ...o });

/** Runs to the first HLT; returns the exceptions raised on the way. */
function run(m: Machine, max = 100): ExceptionEvent[] {
  const ev: ExceptionEvent[] = [];
  const off = m.onException((_c, e) => { ev.push(e); });
  const r = m.run({ maxSteps: max });
  off();
  expect(r.reason, r.detail).toBe("hlt");
  return ev;
}

const fault = (e: ExceptionEvent | undefined): string => (e === undefined ? "none" : `${e.name}(${e.errorCode?.toString(16) ?? "-"})`);
/** The dword at a linear address, read as the supervisor (whatever the CPU's CPL is now). */
function at(m: Machine, lin: number): number {
  const mem = m.mem, user = mem.user;
  mem.user = false; mem.flush();
  try { return mem.read32(lin | 0, 0) >>> 0; } finally { mem.user = user; mem.flush(); }
}

describe("descriptors and descriptor tables", () => {
  test("encode/decode round trip for code, data and LDT descriptors, byte-granular and page-granular limits", () => {
    fc.assert(fc.property(
      fc.constantFrom<"code" | "data" | "ldt">("code", "data", "ldt"), fc.integer({ min: 0, max: 3 }), fc.boolean(), fc.boolean(), fc.boolean(),
      fc.integer({ min: 0, max: 0xffffffff }), fc.oneof(fc.integer({ min: 0, max: 0xfffff }), fc.integer({ min: 0x100, max: 0xfffff }).map((p) => p * 4096 + 0xfff)),
      (kind, dpl, present, x, y, base, limit) => {
        const d: SegmentDescriptor = kind === "code" ? { kind, dpl, present, conforming: x, readable: y, base, limit }
          : kind === "data" ? { kind, dpl, present, writable: x, expandDown: y, base, limit } : { kind, dpl, present, base, limit };
        const [lo, hi] = encodeDescriptor(d);
        expect(decodeDescriptor(lo, hi)).toMatchObject(d);
      }));
  });

  test("Linux's i386 descriptors encode to the kernel's GDT_ENTRY_INIT words (0xc09a/0xc092/0xc0fa/0xc0f2, accessed)", () => {
    const g = linuxGdt32();
    const words = [SEL32.KERNEL_CS, SEL32.KERNEL_DS, SEL32.USER_CS, SEL32.USER_DS].map((s) => encodeDescriptor(g[s >> 3] as SegmentDescriptor).map((w) => (w >>> 0).toString(16)));
    expect(words).toEqual([["ffff", "cf9b00"], ["ffff", "cf9300"], ["ffff", "cffb00"], ["ffff", "cff300"]]);
  });

  test("a load sets the descriptor's accessed bit in memory; LGDT/SGDT move GDTR; SGDT of a typed table is unsupported", () => {
    const m = machine([data(0x1234_5000, { accessed: false })], (a) => {
      a.ins(Code.Mov_r32_imm32, reg(R.EAX), sel(0)).ins(Code.Mov_Sreg_r32m16, reg(R.DS), reg(R.EAX));
      a.ins(Code.Sgdt_m1632, mem(R.ESP, -8)).ins(Code.Lgdt_m1632, mem(R.ESP, -8)).ins(Code.Hlt);
    });
    const off = Number(GDT) + 8 * EXTRA + 5;
    expect(m.mem.read8(off, 0) & 1).toBe(0);
    expect(run(m)).toEqual([]);
    expect(m.mem.read8(off, 0) & 1).toBe(1);
    expect(m.cpu.segBase[SEG.DS] >>> 0).toBe(0x1234_5000);
    const sp = Number(STACK) + 0x2000 - 8;
    expect(m.mem.read16(sp, 0)).toBe(8 * (EXTRA + 1) - 1);
    expect(at(m, sp + 2)).toBe(Number(GDT));
    const typed = new Machine({ bits: 32 });
    typed.map(CODE, 0x1000, Perm.R | Perm.X).map(STACK, 0x4000).load(CODE, [0x0f, 0x01, 0x04, 0x24, 0xf4]); // sgdt (%esp); hlt
    typed.cpu.rip = CODE; typed.cpu.sp = STACK + 0x100n;
    const r = typed.run({ maxSteps: 5 });
    expect([r.reason, r.detail]).toEqual(["unsupported", expect.stringContaining("SGDT: the GDT is a typed table")]);
  });

  test("LGDT at CPL 3 is #GP(0); LLDT loads an LDT whose selectors then load; SLDT stores LDTR", () => {
    const ldtAt = 0xc2003000;
    const m = machine([{ kind: "ldt", dpl: 0, present: true, base: ldtAt, limit: 0x17 }], (a) => {
      a.ins(Code.Mov_r32_imm32, reg(R.EAX), sel(0)).ins(Code.Lldt_r32m16, reg(R.EAX));
      a.ins(Code.Mov_r32_imm32, reg(R.EBX), 0x0c).ins(Code.Mov_Sreg_r32m16, reg(R.ES), reg(R.EBX)); // LDT index 1, RPL 0
      a.ins(Code.Sldt_r32m16, reg(R.ECX)).ins(Code.Hlt);
    });
    const [lo, hi] = encodeDescriptor(data(0x0bad_0000));
    m.write32(BigInt(ldtAt + 8), lo); m.write32(BigInt(ldtAt + 12), hi);
    expect(run(m)).toEqual([]);
    expect([m.cpu.es, m.cpu.segBase[SEG.ES] >>> 0, m.cpu.reg(1)]).toEqual([0x0c, 0x0bad_0000, BigInt(sel(0))]);
    const u = machine([], (a) => a.ins(Code.Lgdt_m1632, mem(R.ESP)).ins(Code.Hlt));
    u.map(0x08048000n, 0x1000, Perm.R | Perm.X | Perm.U).load(0x08048000n, [0x0f, 0x01, 0x14, 0x24, 0xf4]);
    u.map(0xbfff0000n, 0x1000, Perm.R | Perm.W | Perm.U);
    u.cpu.setCs(SEL32.USER_CS); u.cpu.ss = SEL32.USER_DS; u.cpu.rip = 0x08048000n; u.cpu.sp = 0xbfff0800n;
    u.cpu.tss.sp[0] = STACK + 0x1000n; u.cpu.tss.ss[0] = SEL32.KERNEL_DS;
    expect(fault(run(u)[0])).toBe("#GP(0)");
  });
});

describe("loads: the protected-mode checks (SDM Vol. 2 MOV, POP)", () => {
  /** Loads `s` into segment `seg` (a MOV from EAX) at CPL 0; returns the fault or "none". */
  function load(extra: SegmentDescriptor[], seg: R, s: number): { fault: string; m: Machine } {
    const m = machine(extra, (a) => a.ins(Code.Mov_r32_imm32, reg(R.EAX), s).ins(Code.Mov_Sreg_r32m16, reg(seg), reg(R.EAX)).ins(Code.Hlt));
    return { fault: fault(run(m)[0]), m };
  }
  const cases: [string, SegmentDescriptor[], R, number, string][] = [
    ["a present data segment into DS", [data(0x1000)], R.DS, sel(0), "none"],
    ["null into DS (unusable, no fault)", [], R.DS, 0, "none"],
    ["past the GDT limit", [], R.DS, 0x2220, "#GP(2220)"],
    ["an LDT selector with no LDT", [], R.ES, 0x0c, "#GP(c)"],
    ["a system descriptor (LDT) into DS", [{ kind: "ldt", dpl: 0, present: true }], R.DS, sel(0), "#GP(a0)"],
    ["execute-only code into FS", [{ kind: "code", dpl: 0, present: true, readable: false }], R.FS, sel(0), "#GP(a0)"],
    ["readable code into GS", [{ kind: "code", dpl: 0, present: true }], R.GS, sel(0), "none"],
    ["DPL 0 data with RPL 3", [data(0)], R.DS, sel(0, 3), "#GP(a0)"],
    ["not present data into DS", [data(0, { present: false })], R.DS, sel(0), "#NP(a0)"],
    ["null into SS", [], R.SS, 0, "#GP(0)"],
    ["SS with RPL ≠ CPL", [data(0)], R.SS, sel(0, 1), "#GP(a0)"],
    ["read-only data into SS", [data(0, { writable: false })], R.SS, sel(0), "#GP(a0)"],
    ["DPL 3 data into SS at CPL 0", [data(0, { dpl: 3 })], R.SS, sel(0), "#GP(a0)"],
    ["not present stack segment", [data(0, { present: false })], R.SS, sel(0), "#SS(a0)"],
  ];
  for (const [what, extra, seg, s, want] of cases) {
    test(`${what}: ${want}`, () => {
      const { fault: f, m } = load(extra, seg, s);
      expect(f).toBe(want);
      const i = seg - R.ES;
      if (want === "none") expect(m.cpu.segSel[i]).toBe(s);
      else expect(m.cpu.segSel[i], "a faulting load changes nothing").toBe(i === SEG.SS ? SEL32.KERNEL_DS : i === SEG.DS || i === SEG.ES ? SEL32.USER_DS : 0);
    });
  }

  test("a null DS is loadable, but an access through it is #GP(0)", () => {
    const m = machine([], (a) => {
      a.ins(Code.Xor_rm32_r32, reg(R.EAX), reg(R.EAX)).ins(Code.Mov_Sreg_r32m16, reg(R.DS), reg(R.EAX));
      a.ins(Code.Mov_r32_rm32, reg(R.EBX), mem(R.ESP)).ins(Code.Mov_r32_rm32, reg(R.ECX), mem(R.EBX)).ins(Code.Hlt);
    });
    const ev = run(m);
    expect(ev.map(fault)).toEqual(["#GP(0)"]);
    expect(ev[0].detail).toBe("access through a null segment register");
    expect(m.cpu.segAttr[SEG.DS] & SEG_UNUSABLE).toBe(SEG_UNUSABLE);
  });

  test("POP %ds faults before ESP moves; PUSH %ds stores the selector zero-extended; LSS and LDS load a far pointer", () => {
    const m = machine([data(0x7000_0000), data(0x0100_0000)], (a) => {
      a.ins(Code.Pushd_imm32, 0x2220).ins(Code.Popd_DS, reg(R.DS)); // #GP(0x2220): past the limit
      a.ins(Code.Hlt);
    });
    const sp0 = m.cpu.sp;
    expect(run(m).map(fault)).toEqual(["#GP(2220)"]);
    expect(m.cpu.sp).toBe(sp0 - 4n - 16n); // the pushed word still there, under the #GP frame and its error code
    const m2 = machine([data(0x7000_0000), data(0x0100_0000)], (a) => {
      a.ins(Code.Mov_r32_imm32, reg(R.EAX), 0xffff_0000 | sel(1)).ins(Code.Mov_Sreg_r32m16, reg(R.ES), reg(R.EAX));
      a.ins(Code.Pushd_ES, reg(R.ES)).ins(Code.Pushd_imm32, sel(0)).ins(Code.Pushd_imm32, 0x1234);
      a.ins(Code.Lds_r32_m1632, reg(R.EBX), mem(R.ESP)).ins(Code.Lss_r32_m1632, reg(R.ESP), mem(R.ESP)).ins(Code.Hlt);
    });
    expect(run(m2)).toEqual([]);
    const c = m2.cpu;
    expect([c.ds, c.segBase[SEG.DS] >>> 0, c.reg(3)]).toEqual([sel(0), 0x7000_0000, 0x1234n]);
    expect([c.ss, c.segBase[SEG.SS] >>> 0, c.sp]).toEqual([sel(0), 0x7000_0000, 0x1234n]);
    expect(at(m2, Number(STACK) + 0x2000 - 4)).toBe(sel(1)); // zero-extended, not 0xffff....
  });

  test("MOV to SS holds off an interrupt for one instruction (the MOV SS shadow)", () => {
    const m = machine([], (a) => {
      a.ins(Code.Sti).ins(Code.Nopd).ins(Code.Mov_r32_imm32, reg(R.EAX), SEL32.KERNEL_DS).ins(Code.Mov_Sreg_r32m16, reg(R.SS), reg(R.EAX));
      a.ins(Code.Mov_r32_imm32, reg(R.EBX), 1).ins(Code.Hlt);
    });
    m.load(HANDLER + 0x40n, [0xf4]);
    m.setGate(0x40, { handler: HANDLER + 0x40n });
    const seen: bigint[] = [];
    let steps = 0;
    m.onInstruction((cpu, addr) => { if (++steps === 4) cpu.requestInterrupt(0x40); seen.push(addr); });
    const r = m.run({ maxSteps: 20 });
    expect(r.reason).toBe("hlt");
    expect(m.cpu.reg(3)).toBe(1n); // the MOV EBX after MOV SS ran before the interrupt
    expect(m.cpu.rip).toBe(HANDLER + 0x41n);
  });
});

describe("addressing: the segment of each operand, bases added", () => {
  /** The stores of the property, with the segment each must go through. */
  const STORES: readonly [Mem, R, "ds" | "ss" | "es" | "fs" | "gs" | "cs"][] = [
    [mem(R.EBX, 0x10), R.EAX, "ds"],
    [mem(R.EBP, 0x14), R.ECX, "ss"],
    [mem(R.ESP, 0x18), R.EDX, "ss"],
    [{ base: R.EBX, disp: 0x1c, seg: R.SS }, R.ESI, "ss"],
    [{ base: R.EBP, disp: 0x20, seg: R.DS }, R.EDI, "ds"],
    [{ base: R.EBX, disp: 0x24, seg: R.ES }, R.EAX, "es"],
    [{ base: R.EBX, disp: 0x28, seg: R.FS }, R.ECX, "fs"],
    [{ base: R.EBX, index: R.ESI, scale: 4, disp: 0x2c, seg: R.GS }, R.EDX, "gs"],
  ];

  test("DS, SS, ES, FS, GS bases: every store lands at base + offset, reads too, LEA gives the offset alone", () => {
    const u32 = fc.integer({ min: 0, max: 0xffffffff });
    fc.assert(fc.property(fc.record({ ds: u32, ss: u32, es: u32, fs: u32, gs: u32 }), u32, u32, u32, fc.integer({ min: 0, max: 0x3f }),
      (bases, ebx, ebp, espLow, esi) => {
        const esp = (espLow & ~3) >>> 0;
        const segs = ["ds", "ss", "es", "fs", "gs"] as const;
        const m = machine(segs.map((s) => data(bases[s])), (a) => {
          segs.forEach((s, i) => {
            a.ins(Code.Mov_r32_imm32, reg(R.EAX), sel(i));
            a.ins(Code.Mov_Sreg_r32m16, reg([R.DS, R.SS, R.ES, R.FS, R.GS][i]), reg(R.EAX));
          });
          a.ins(Code.Mov_r32_imm32, reg(R.ESP), esp).ins(Code.Mov_r32_imm32, reg(R.EBX), ebx).ins(Code.Mov_r32_imm32, reg(R.EBP), ebp);
          a.ins(Code.Mov_r32_imm32, reg(R.ESI), esi);
          a.ins(Code.Mov_r32_rm32, reg(R.EDI), mem(R.EBX)).ins(Code.Mov_r32_rm32, reg(R.EDX), mem(R.EBP, 4)); // reads: DS, SS
          a.ins(Code.Mov_r32_imm32, reg(R.EAX), 0x1111).ins(Code.Mov_r32_imm32, reg(R.ECX), 0x2222);
          a.ins(Code.Push_r32, reg(R.EDX)).ins(Code.Push_r32, reg(R.EDI)).ins(Code.Mov_r32_imm32, reg(R.EDX), 0x3333);
          a.ins(Code.Mov_r32_imm32, reg(R.EDI), 0x5555);
          for (const [dst, src] of STORES) a.ins(Code.Mov_rm32_r32, dst, reg(src));
          a.ins(Code.Lea_r32_m, reg(R.EDI), { base: R.EBX, disp: 0x30, seg: R.FS }).ins(Code.Hlt);
        });
        const base = (s: string): number => (s === "cs" ? 0 : bases[s as keyof typeof bases]);
        const offs: Record<string, number> = { [R.EBX]: ebx, [R.EBP]: ebp, [R.ESP]: esp - 8 };
        const lin = (mm: Mem, s: string): number => (base(s) + offs[mm.base] + (mm.index === undefined ? 0 : 4 * esi) + Number(mm.disp ?? 0)) >>> 0;
        const reads = [lin(mem(R.EBX), "ds"), lin(mem(R.EBP, 4), "ss")];
        const pushes = [(bases.ss + esp - 4) >>> 0, (bases.ss + esp - 8) >>> 0];
        const stores = STORES.map(([d, , s]) => lin(d, s));
        const all = [...reads, ...pushes, ...stores];
        const pages = new Set(all.flatMap((x) => [x >>> 12, ((x + 3) >>> 0) >>> 12]));
        const taken = [CODE, HANDLER, STACK, STACK + 0x1000n, STACK + 0x2000n, STACK + 0x3000n, GDT].map((p) => Number(p >> 12n));
        fc.pre(taken.every((p) => !pages.has(p)));
        fc.pre(all.every((x, i) => all.every((y, j) => i === j || Math.abs(x - y) >= 4) && x <= 0xfffffffc));
        for (const p of pages) m.map(BigInt(p) << 12n, 0x1000);
        m.write32(BigInt(reads[0]), 0xd5d5d5d5);
        m.write32(BigInt(reads[1]), 0x55555555);
        const writes: bigint[] = [];
        m.onWrite((a) => { writes.push(a); });
        expect(run(m)).toEqual([]);
        const vals: Record<number, number> = { [R.EAX]: 0x1111, [R.ECX]: 0x2222, [R.EDX]: 0x3333, [R.ESI]: esi, [R.EDI]: 0x5555 };
        STORES.forEach(([, src], i) => expect(at(m, stores[i]), `store ${i}`).toBe(vals[src]));
        expect([at(m, pushes[0]), at(m, pushes[1])]).toEqual([0x55555555, 0xd5d5d5d5]);
        expect(writes.filter((w) => w < GDT || w >= GDT + 0x1000n).map(Number).sort()).toEqual([...pushes, ...stores].sort());
        expect(m.cpu.reg(7)).toBe(BigInt((ebx + 0x30) >>> 0)); // LEA: no base
      }), { numRuns: 60 });
  });

  test("CS override reads through CS (base 0 here)", () => {
    const m = machine([], (a) => a.ins(Code.Mov_r32_imm32, reg(R.EBX), Number(STACK)).ins(Code.Mov_r32_rm32, reg(R.EAX), { base: R.EBX, seg: R.CS }).ins(Code.Hlt));
    m.write32(STACK, 0xfeedf00d);
    expect(run(m)).toEqual([]);
    expect(m.cpu.reg(0)).toBe(0xfeedf00dn);
  });
});

describe("the stack through a nonzero SS base", () => {
  const u32 = fc.integer({ min: 0, max: 0xffffffff });

  test("push/pop, call/ret, leave, pushf/popf, int3 and IRET all use SS:ESP", () => {
    fc.assert(fc.property(u32, fc.integer({ min: 0x100, max: 0x700 }), (ssBase, off) => {
      const linTop = Number(STACK) + 0x2000 + 4 * off; // where SS:ESP points, linearly
      const esp = (linTop - ssBase) >>> 0;
      const m = machine([data(ssBase)], (a) => {
        const f = a.label("f");
        a.ins(Code.Mov_r32_imm32, reg(R.EAX), sel(0)).ins(Code.Mov_Sreg_r32m16, reg(R.SS), reg(R.EAX)).ins(Code.Mov_r32_imm32, reg(R.ESP), esp);
        a.ins(Code.Mov_r32_imm32, reg(R.EAX), 0xa1).ins(Code.Push_r32, reg(R.EAX)).ins(Code.Pushfd);
        a.branch(Code.Call_rel32_32, f);
        a.ins(Code.Popfd).ins(Code.Pop_r32, reg(R.ESI)).ins(Code.Int3).ins(Code.Hlt);
        a.bind(f);
        a.ins(Code.Push_r32, reg(R.EBP)).ins(Code.Mov_r32_rm32, reg(R.EBP), reg(R.ESP)).ins(Code.Mov_r32_rm32, reg(R.EDI), mem(R.EBP, 8)); // the pushed flags' slot… via SS
        a.ins(Code.Mov_r32_rm32, reg(R.EDX), mem(R.EBP, 12)).ins(Code.Leaved).ins(Code.Retnd);
      });
      m.load(HANDLER + 3n, [0xcf]); // int3's handler: iretd
      const ev = run(m);
      expect(ev.map((e) => e.name)).toEqual(["#BP"]);
      const c = m.cpu;
      expect(c.reg(2)).toBe(0xa1n);    // read through SS by EBP
      expect(c.reg(6)).toBe(0xa1n);    // popped
      expect(c.sp).toBe(BigInt(esp)); // IRET popped the frame int3 pushed at SS:ESP
      expect(c.stackLinear()).toBe(BigInt(linTop));
      // int3's frame, linearly at SS.base + ESP − 12 … − 4: EIP (the hlt after it), CS, EFLAGS
      expect([at(m, linTop - 12), at(m, linTop - 8), at(m, linTop - 4)]).toEqual([Number(c.rip) - 1, SEL32.KERNEL_CS, c.flags]);
    }), { numRuns: 40 });
  });

  test("a privilege change loads SS0 from the TSS with its base: the frame lands at base + ESP0, IRET to user restores the user's SS", () => {
    fc.assert(fc.property(u32, u32, (kBase, uBase) => {
      const kLin = Number(STACK) + 0x1800, uLin = Number(STACK) + 0x3800;
      const m = machine([data(kBase), data(uBase, { dpl: 3 })]);
      const ucode = 0x08048000n;
      m.map(ucode, 0x1000, Perm.R | Perm.X | Perm.U).load(ucode, [0xcc, 0xf4]); // int3; hlt
      m.mem.protect(STACK + 0x3000n, 0x1000, Perm.R | Perm.W | Perm.U);
      m.load(HANDLER + 3n, [0x8b, 0x04, 0x24, 0xcf]); // mov (%esp),%eax; iretd
      m.setGate(3, { handler: HANDLER + 3n, dpl: 3 });
      const c = m.cpu;
      c.tss.ss[0] = sel(0); c.tss.sp[0] = BigInt((kLin - kBase) >>> 0);
      c.setCs(SEL32.USER_CS); c.ss = sel(1, 3); c.rip = ucode; c.sp = BigInt((uLin - uBase) >>> 0); c.flags = 0x202;
      let inHandler: { ss: number; base: number } | undefined;
      m.onInstruction((cpu, addr) => { if (addr === HANDLER + 3n) inHandler = { ss: cpu.ss, base: cpu.segBase[SEG.SS] >>> 0 }; });
      const r = m.run({ maxSteps: 10, until: ucode + 1n });
      expect(r.reason).toBe("until");
      expect(inHandler).toEqual({ ss: sel(0), base: kBase >>> 0 });
      expect([at(m, kLin - 20), at(m, kLin - 16), at(m, kLin - 8), at(m, kLin - 4)]).toEqual([Number(ucode) + 1, SEL32.USER_CS, (uLin - uBase) >>> 0, sel(1, 3)]);
      expect(c.reg(0)).toBe(ucode + 1n); // the handler read its frame through SS
      expect([c.cpl, c.ss, c.segBase[SEG.SS] >>> 0, c.sp]).toEqual([3, sel(1, 3), uBase >>> 0, BigInt((uLin - uBase) >>> 0)]);
    }), { numRuns: 40 });
  });

  test("IRET to user mode nulls DS/ES/FS/GS holding kernel data segments and keeps DPL-3 ones", () => {
    const m = machine([data(0x1000, { dpl: 3 })], (a) => {
      a.ins(Code.Mov_r32_imm32, reg(R.EAX), SEL32.KERNEL_DS).ins(Code.Mov_Sreg_r32m16, reg(R.DS), reg(R.EAX)).ins(Code.Mov_Sreg_r32m16, reg(R.FS), reg(R.EAX));
      a.ins(Code.Mov_r32_imm32, reg(R.EAX), sel(0, 3)).ins(Code.Mov_Sreg_r32m16, reg(R.ES), reg(R.EAX));
      a.ins(Code.Pushd_imm32, SEL32.USER_DS).ins(Code.Pushd_imm32, 0xbfff0100).ins(Code.Pushd_imm32, 0x202).ins(Code.Pushd_imm32, SEL32.USER_CS).ins(Code.Pushd_imm32, 0x08048000);
      a.ins(Code.Iretd);
    });
    m.map(0x08048000n, 0x1000, Perm.R | Perm.X | Perm.U).load(0x08048000n, [0xf4]);
    const r = m.run({ maxSteps: 20, until: 0x08048000n });
    expect(r.reason).toBe("until");
    const c = m.cpu;
    expect([c.cpl, c.ds, c.es, c.fs, c.gs]).toEqual([3, 0, sel(0, 3), 0, 0]);
    expect(c.segAttr[SEG.DS] & SEG_UNUSABLE).toBe(SEG_UNUSABLE);
    expect(c.segBase[SEG.ES]).toBe(0x1000);
  });
});

describe("state: snapshots and diffs carry the segment registers", () => {
  test("snapshot → change every segment → restore gives the bases, limits, attributes, GDTR and LDTR back", () => {
    const m = machine([data(0x1111_0000), data(0x2222_0000, { limit: 0xffff })]);
    const c = m.cpu;
    c.ds = sel(0); c.ss = sel(1);
    const snap = m.snapshot();
    c.ds = 0; c.ss = SEL32.KERNEL_DS; c.setGdtr(true, 0, c.gdtrLimit); c.setLdtr(0x88, true, 0x1000, 0xff);
    expect(Machine.diff(snap, m.snapshot()).registers.map((d) => d.name)).toEqual(
      expect.arrayContaining(["ss", "ds", "ss.base", "ss.limit", "ds.base", "ds.attr", "gdtr.base", "ldtr"]));
    m.restore(snap);
    expect([c.ds, c.segBase[SEG.DS] >>> 0, c.ss, c.segBase[SEG.SS] >>> 0, c.segLimit[SEG.SS], c.gdtrBase, c.ldtrOn]).toEqual([sel(0), 0x1111_0000, sel(1), 0x2222_0000, 0xffff, Number(GDT) | 0, false]);
    expect(Machine.diff(snap, m.snapshot()).equal).toBe(true);
  });

  test("64-bit mode: MOV to DS/ES/SS loads, the bases are ignored; FS/GS are not modeled (#UD)", () => {
    const m = new Machine({ bits: 64 });
    const code = 0xffffffff81000000n;
    m.map(code, 0x1000, Perm.R | Perm.X).map(0xffffc90000000000n, 0x2000);
    // mov $0x18,%eax; mov %eax,%ds; mov %eax,%ss; mov (%rsp),%rbx; mov %eax,%fs
    m.load(code, [0xb8, 0x18, 0, 0, 0, 0x8e, 0xd8, 0x8e, 0xd0, 0x48, 0x8b, 0x1c, 0x24, 0x8e, 0xe0]);
    m.cpu.rip = code; m.cpu.sp = 0xffffc90000001000n;
    const ev: ExceptionEvent[] = [];
    m.onException((_c, e) => { ev.push(e); return "stop"; });
    m.run({ maxSteps: 10 });
    expect([m.cpu.ds, m.cpu.ss]).toEqual([0x18, 0x18]);
    expect(ev.map((e) => [e.name, e.detail])).toEqual([["#UD", expect.stringContaining("FS/GS")]]);
  });
});
