/**
 * FRED event delivery and ERETS/ERETU (src/machine/fred.ts): frame placement below the red
 * zone, exact frame words, ring 3 -> 0 through FRED_RSP0, round trips that restore the
 * interrupted state exactly, the ERET checks, nested faults and stack levels, and where a
 * CALL-emulation push lands with and without a red zone.
 *
 * Expected frame words are written out as literals (fred_ss: ss 15:0, swevent 17, vector
 * 39:32, type 51:48, l 57, nested 58, insnlen 63:60), not computed by the code under test.
 */
import { describe, expect, test } from "vitest";
import fc from "fast-check";
import {
  type ExceptionEvent, F, type FredConfig, type FredDelivery, fredDelivery, Machine, Perm, SEL64, saveCpu, UsageError,
} from "../src/index.js";

const CODE = 0xffffffff81000000n;      // kernel text
const ENTRY = 0xffffffff81200000n;     // FRED entry page: user entry, kernel entry at +256
const KENTRY = ENTRY + 256n;
const STACK = 0xffffc90000000000n;     // kernel stack region [STACK, STACK + 0x10000)
const RSP0 = 0xffffc90000028000n;      // FRED_RSP0, top of [.. - 0x8000, ..)
const LV = [0xffffc90000038000n, 0xffffc90000048000n, 0xffffc90000058000n] as const; // FRED_RSP1..3
const RO = 0xffffc90000060000n;        // a read-only kernel page
const UCODE = 0x400000n;
const USTACK = 0x7ffff0000000n;        // user stack region [USTACK, USTACK + 0x10000)
const M64 = (1n << 64n) - 1n;

const INT3 = 0xcc, HLT = 0xf4;
const ERETS = [0xf2, 0x0f, 0x01, 0xca];
const ERETU = [0xf3, 0x0f, 0x01, 0xca];
const LINUX: FredConfig = { redzone: 64, rsp0: RSP0, entrypoint: ENTRY };

/** A 64-bit machine at CPL 0 with FRED delivery, `code` at CODE and `entry` at ENTRY + 256. */
function fredMachine(code: readonly number[], cfg: Partial<FredConfig> = {}, entry: readonly number[] = []): Machine {
  const m = new Machine({ bits: 64 });
  m.map(CODE, 0x1000, Perm.R | Perm.X).load(CODE, code);
  m.map(ENTRY, 0x1000, Perm.R | Perm.X).load(ENTRY, new Array<number>(0x200).fill(INT3));
  if (entry.length > 0) m.load(KENTRY, entry);
  m.map(STACK, 0x10000);
  m.map(RSP0 - 0x8000n, 0x8000);
  for (const top of LV) m.map(top - 0x1000n, 0x1000);
  m.map(RO, 0x1000, Perm.R);
  m.map(UCODE, 0x1000, Perm.R | Perm.X | Perm.U);
  m.map(USTACK, 0x10000, Perm.R | Perm.W | Perm.U);
  m.cpu.delivery = fredDelivery({ ...LINUX, ...cfg });
  m.cpu.rip = CODE;
  return m;
}

/** The machine's FRED delivery object (for its stack level). */
function fredOf(m: Machine): FredDelivery {
  const d = m.cpu.delivery;
  if (d.name !== "fred") throw new Error("not a FRED machine");
  return d as FredDelivery;
}

/** The 8 frame words at F. */
function frameAt(m: Machine, f: bigint): bigint[] {
  return Array.from({ length: 8 }, (_, k) => m.read64(f + BigInt(8 * k)));
}

const FLAG_BITS = F.CF | F.PF | F.AF | F.ZF | F.SF | F.OF | F.DF | F.IF | F.AC | F.ID;
const flagsArb = fc.integer({ min: 0, max: 0x3fffff }).map((f) => (f & FLAG_BITS) | 2);
const regsArb = fc.array(fc.bigInt({ min: 0n, max: M64 }), { minLength: 16, maxLength: 16 });
/** An interrupted kernel RSP at any alignment, with room for a 448-byte red zone below. */
const rArb = fc.integer({ min: 0x400, max: 0xf000 }).map((o) => STACK + BigInt(o));

function setRegs(m: Machine, regs: readonly bigint[], r: bigint, flags: number): void {
  regs.forEach((v, i) => { if (i !== 4) m.cpu.setReg(i, v); });
  m.cpu.sp = r;
  m.cpu.flags = flags;
}

/** Records every write as [address, size]. */
function writesOf(m: Machine): [bigint, number][] {
  const w: [bigint, number][] = [];
  m.onWrite((a, n) => { w.push([a, n]); });
  return w;
}

describe("FRED delivery: where the frame goes", () => {
  test("same-level INT3 at CPL 0: F = ((R − 64) & ~63) − 64 for every R mod 64; only [F, F+64) is written", () => {
    fc.assert(fc.property(rArb, (r) => {
      const m = fredMachine([INT3]);
      m.cpu.sp = r;
      const writes = writesOf(m);
      const res = m.run({ maxSteps: 5, until: KENTRY });
      expect(res.reason).toBe("until");
      const f = ((r - 64n) & ~63n) - 64n;
      expect(m.cpu.sp).toBe(f);
      expect(m.read64(f + 32n)).toBe(r);                      // the saved RSP is the interrupted R
      // Eight 8-byte writes, all inside the frame: the red zone [F+64, R) and everything
      // at and above R are untouched.
      expect(writes.length).toBe(8);
      for (const [a, n] of writes) { expect(a >= f && a + BigInt(n) <= f + 64n).toBe(true); }
      expect(new Set(writes.map(([a]) => a)).size).toBe(8);
      expect(f + 64n <= r - 64n).toBe(true);
    }), { numRuns: 200 });
  });

  test("any configured red zone (0..448, multiples of 64): F = ((R − redzone) & ~63) − 64", () => {
    fc.assert(fc.property(rArb, fc.integer({ min: 0, max: 7 }), (r, lines) => {
      const rz = lines * 64;
      const m = fredMachine([INT3], { redzone: rz });
      m.cpu.sp = r;
      expect(m.run({ maxSteps: 5, until: KENTRY }).reason).toBe("until");
      expect(m.cpu.sp).toBe(((r - BigInt(rz)) & ~63n) - 64n);
    }), { numRuns: 100 });
  });

  test("configuration the MSRs cannot hold is refused", () => {
    expect(() => fredDelivery({ ...LINUX, redzone: 32 })).toThrow(UsageError);
    expect(() => fredDelivery({ ...LINUX, redzone: 512 })).toThrow(UsageError);
    expect(() => fredDelivery({ ...LINUX, entrypoint: ENTRY + 0x10n })).toThrow(UsageError);
    expect(() => fredDelivery({ ...LINUX, rsp0: RSP0 - 8n })).toThrow(UsageError);
    expect(() => fredDelivery({ ...LINUX, rsp0: 0x0000800000000000n })).toThrow(UsageError);
    expect(() => fredDelivery({ ...LINUX, stackLevels: { rsp: [LV[0], LV[1], LV[2]], vectors: { 14: 4 } } })).toThrow(UsageError);
  });
});

describe("FRED delivery: frame words", () => {
  test("INT3 at CPL 0: exact frame, new RIP/RSP/RFLAGS/CS/SS", () => {
    const m = fredMachine([INT3]);
    const r = STACK + 0x8008n;                                // R mod 64 = 8
    m.cpu.sp = r;
    m.cpu.flags = 0x2 | F.IF | F.ZF | F.DF | F.AC;
    expect(m.run({ maxSteps: 5, until: KENTRY }).reason).toBe("until");
    const f = STACK + 0x7f80n;                                // ((R − 64) & ~63) − 64
    expect(m.cpu.sp).toBe(f);
    expect(frameAt(m, f)).toEqual([
      0n,                                                     // error code: none for #BP
      CODE + 1n,                                              // RIP: after the int3
      0x10n,                                                  // CS 0x10, stack level 0, wfe 0
      BigInt(0x2 | F.IF | F.ZF | F.DF | F.AC),                // RFLAGS as interrupted
      r,                                                      // RSP
      0x1206_0003_0000_0018n,                                 // SS 0x18; vector 3, type 6 (SWEXC), l, insnlen 1
      0n,                                                     // event data
      0n,                                                     // reserved
    ]);
    expect(m.cpu.rip).toBe(KENTRY);
    expect(m.cpu.flags).toBe(0x2);                            // every flag cleared, IF included
    expect([m.cpu.cs, m.cpu.ss]).toEqual([SEL64.KERNEL_CS, SEL64.KERNEL_DS]);
  });

  test("INT $3 (CD 03) is a software interrupt: type 4, swevent, insnlen 2", () => {
    const m = fredMachine([0xcd, 0x03]);
    m.cpu.sp = STACK + 0x8000n;
    expect(m.run({ maxSteps: 5, until: KENTRY }).reason).toBe("until");
    const f = STACK + 0x8000n - 128n;
    expect(m.read64(f + 8n)).toBe(CODE + 2n);
    expect(m.read64(f + 40n)).toBe(0x2204_0003_0002_0018n);  // swevent, vector 3, type 4, l, insnlen 2
  });

  test("#PF at CPL 0: error code, RIP of the faulting instruction, RF in the image, event data = CR2", () => {
    const m = fredMachine([0x48, 0x89, 0x03]);               // mov %rax, (%rbx)
    const r = STACK + 0x9000n;
    m.cpu.sp = r;
    m.cpu.setReg(3, RO + 0x123n);                            // a read-only page
    m.cpu.flags = 0x2 | F.CF;
    const seen: ExceptionEvent[] = [];
    m.onException((_c, e) => { seen.push(e); });
    expect(m.run({ maxSteps: 5, until: KENTRY }).reason).toBe("until");
    expect(seen.map((e) => e.vector)).toEqual([14]);
    const f = r - 128n;
    expect(frameAt(m, f)).toEqual([
      3n,                                                     // P | W, supervisor
      CODE,                                                   // the faulting mov
      0x10n,
      BigInt(0x2 | F.CF | F.RF),                              // faults save RF = 1
      r,
      0x0203_000e_0000_0018n,                                 // vector 14, type 3 (HW exception), l
      RO + 0x123n,                                            // event data: CR2
      0n,
    ]);
    expect(m.cpu.cr2).toBe(RO + 0x123n);
  });

  test("INT n from CPL 3: stack switches to FRED_RSP0 (no red zone), user entry, kernel CS/SS", () => {
    fc.assert(fc.property(fc.integer({ min: 0x100, max: 0xff00 }), (off) => {
      const m = fredMachine([]);
      m.load(UCODE, [0xcd, 0x80]);                           // int $0x80
      m.cpu.setCs(SEL64.USER_CS); m.cpu.ss = SEL64.USER_DS;
      m.cpu.rip = UCODE;
      const ursp = USTACK + BigInt(off);
      m.cpu.sp = ursp;
      m.cpu.flags = 0x202;
      const writes = writesOf(m);
      expect(m.run({ maxSteps: 5, until: ENTRY }).reason).toBe("until");
      const f = RSP0 - 64n;
      expect(m.cpu.sp).toBe(f);
      expect([m.cpu.cs, m.cpu.ss, m.cpu.cpl, m.cpu.flags]).toEqual([SEL64.KERNEL_CS, SEL64.KERNEL_DS, 0, 0x2]);
      expect(frameAt(m, f)).toEqual([
        0n, UCODE + 2n, 0x33n, 0x202n, ursp,
        0x2204_0080_0002_002bn,                               // SS 0x2b; swevent, vector 0x80, type 4, l, insnlen 2
        0n, 0n,
      ]);
      for (const [a] of writes) expect(a >= f && a < RSP0).toBe(true); // nothing on the user stack
    }), { numRuns: 50 });
  });

  test("INT3 from CPL 3 is SWEXC at level 0 even when #BP has a higher configured level", () => {
    const m = fredMachine([], { stackLevels: { rsp: [LV[0], LV[1], LV[2]], vectors: { 3: 2 } } });
    m.load(UCODE, [INT3]);
    m.cpu.setCs(SEL64.USER_CS); m.cpu.ss = SEL64.USER_DS;
    m.cpu.rip = UCODE; m.cpu.sp = USTACK + 0x800n; m.cpu.flags = 0x202;
    expect(m.run({ maxSteps: 5, until: ENTRY }).reason).toBe("until");
    expect(m.cpu.sp).toBe(RSP0 - 64n);
    expect(m.read64(RSP0 - 24n)).toBe(0x1206_0003_0000_002bn);
    expect(fredOf(m).stackLevel(m.cpu)).toBe(0);
  });
});

describe("FRED round trips", () => {
  test("INT3 + ERETS restores every register, RFLAGS, CS, SS, and all memory but the frame", () => {
    fc.assert(fc.property(regsArb, rArb, flagsArb, (regs, r, flags) => {
      const m = fredMachine([INT3, HLT], {}, ERETS);
      setRegs(m, regs, r, flags);
      const before = m.snapshot();
      const res = m.run({ maxSteps: 10, until: CODE + 1n });
      expect(res.reason).toBe("until");
      expect(res.steps).toBe(2);                              // int3, erets
      const f = ((r - 64n) & ~63n) - 64n;
      const d = Machine.diff(before, m.snapshot(), { ignore: [[f, f + 64n]] });
      expect(d.registers).toEqual([{ name: "rip", a: CODE, b: CODE + 1n }]);
      expect(d.memory).toEqual([]);
    }), { numRuns: 150 });
  });

  test("INT n from CPL 3 + ERETU returns to ring 3 with the exact user state", () => {
    fc.assert(fc.property(regsArb, fc.integer({ min: 0x100, max: 0xff00 }), flagsArb, (regs, off, flags) => {
      const m = fredMachine([], {}, []);
      m.load(ENTRY, ERETU);
      m.load(UCODE, [0xcd, 0x80, HLT]);
      m.cpu.setCs(SEL64.USER_CS); m.cpu.ss = SEL64.USER_DS;
      m.cpu.rip = UCODE;
      setRegs(m, regs, USTACK + BigInt(off), flags);
      const before = saveCpu(m.cpu);
      expect(m.run({ maxSteps: 10, until: UCODE + 2n }).reason).toBe("until");
      const after = saveCpu(m.cpu);
      expect({ ...after, ripLo: 0, ripHi: 0 }).toEqual({ ...before, ripLo: 0, ripHi: 0 });
      expect(m.cpu.rip).toBe(UCODE + 2n);
      expect(m.cpu.cpl).toBe(3);
      expect(m.mem.user).toBe(true);
    }), { numRuns: 60 });
  });

  test("CALL emulation in the handler (Linux, red zone 64): push at R−8 misses the frame; ERETS lands in the target", () => {
    fc.assert(fc.property(rArb.map((r) => r & ~7n), (r) => {
      const target = CODE + 0x100n;
      const m = fredMachine([INT3, 0x90, 0x90, 0x90, 0x90], {}, ERETS);
      m.cpu.sp = r;
      expect(m.run({ maxSteps: 5, until: KENTRY }).reason).toBe("until");
      const f = m.cpu.sp;
      const frame = frameAt(m, f);
      // int3_emulate_call: regs->sp -= 8; *regs->sp = ip_after_call; regs->ip = target.
      const regsSp = m.read64(f + 32n) - 8n;
      m.write64(regsSp, CODE + 5n);
      m.write64(f + 32n, regsSp);
      m.write64(f + 8n, target);
      expect(frameAt(m, f).filter((_, k) => k !== 1 && k !== 4)).toEqual(frame.filter((_, k) => k !== 1 && k !== 4));
      expect(m.run({ maxSteps: 1 }).steps).toBe(1);          // ERETS
      expect(m.cpu.rip).toBe(target);
      expect(m.cpu.sp).toBe(r - 8n);
      expect(m.read64(r - 8n)).toBe(CODE + 5n);
    }), { numRuns: 100 });
  });
});

describe("red zone 0: a CALL-emulation push at R−8 can land in the live frame", () => {
  test("it overlaps exactly when R mod 64 < 8; with 8-aligned R that is R ≡ 0 (mod 64), hitting F+56", () => {
    fc.assert(fc.property(rArb, (r) => {
      const m = fredMachine([INT3], { redzone: 0 });
      m.cpu.sp = r;
      expect(m.run({ maxSteps: 5, until: KENTRY }).reason).toBe("until");
      const f = m.cpu.sp;
      expect(f).toBe((r & ~63n) - 64n);
      const overlaps = r - 8n < f + 64n;                      // [R−8, R) meets [F, F+64)
      expect(overlaps).toBe(r % 64n < 8n);
      if (r % 64n === 0n) expect(r - 8n).toBe(f + 56n);      // the aligned case: the reserved word
      if (overlaps) expect(r - 8n > f + 48n).toBe(true);     // only the top word is ever reached
      // The push itself: which frame bytes it changes.
      const old = frameAt(m, f);
      m.write64(r - 8n, 0xdeadbeefcafef00dn);
      const changed = frameAt(m, f).map((w, k) => w !== old[k]);
      expect(changed.slice(0, 7).some((x) => x)).toBe(false);
      expect(changed[7]).toBe(overlaps);
    }), { numRuns: 200 });
  });

  test("with the Linux red zone (64) the push never reaches the frame, for every R", () => {
    fc.assert(fc.property(rArb, (r) => {
      const f = ((r - 64n) & ~63n) - 64n;
      expect(r - 8n >= f + 64n + 56n).toBe(true);             // at least 56 bytes above the frame top
    }), { numRuns: 200 });
  });
});

describe("ERETS / ERETU checks", () => {
  /** Runs one ERET with the given 5 return-state words at RSP + 8 and reports the first event. */
  function eret(bytes: readonly number[], words: readonly bigint[], setup?: (m: Machine) => void): { m: Machine; ev: ExceptionEvent | undefined; reason: string } {
    const m = fredMachine(bytes);
    const sp = STACK + 0x1000n;
    words.forEach((w, k) => m.write64(sp + 8n + 8n * BigInt(k), w));
    m.cpu.sp = sp;
    setup?.(m);
    let ev: ExceptionEvent | undefined;
    m.onException((_c, e) => { ev = e; return "stop"; });
    const reason = m.run({ maxSteps: 1 }).reason;
    return { m, ev, reason };
  }
  const ok = [CODE + 0x10n, 0x10n, 0x2n, STACK + 0x2000n, 0x18n];
  const gp = (why: string, k: number, v: bigint): [string, bigint[]] => [why, ok.map((w, i) => (i === k ? v : w))];

  test("ERETS with a valid state returns; sl/wfe and event-info bits are ignored", () => {
    const { m, ev } = eret(ERETS, [CODE + 0x10n, 0x70010n, BigInt(0x2 | F.IF | F.CF), STACK + 0x2008n, 0xffff_ffff_0007_0018n]);
    expect(ev).toBeUndefined();
    expect([m.cpu.rip, m.cpu.sp, m.cpu.flags]).toEqual([CODE + 0x10n, STACK + 0x2008n, 0x2 | F.IF | F.CF]);
  });

  for (const [why, words] of [
    gp("non-canonical RIP", 0, 0x0000800000000000n),
    gp("CS word bit 19", 1, 0x80010n),
    gp("CS word bits 63:32", 1, 0x1_0000_0010n),
    gp("another CS", 1, 0x33n),
    gp("RFLAGS bit 1 clear", 2, 0x0n),
    gp("RFLAGS bit 3", 2, 0xan),
    gp("RFLAGS VM", 2, BigInt(0x2 | F.VM)),
    gp("RFLAGS bit 32", 2, 0x1_0000_0002n),
    gp("SS word bit 19", 4, 0x80018n),
    gp("another SS", 4, 0x2bn),
  ]) {
    test(`ERETS: ${why} -> #GP(0), nothing changed`, () => {
      const { m, ev } = eret(ERETS, words);
      expect(ev && [ev.vector, ev.errorCode, ev.ip]).toEqual([13, 0, CODE]);
      expect([m.cpu.rip, m.cpu.sp]).toEqual([CODE, STACK + 0x1000n]);
    });
  }

  test("ERETU checks: ring-3 selectors, IOPL 0, stack level 0; compatibility mode unsupported", () => {
    const u = [UCODE, 0x33n, 0x202n, USTACK + 0x100n, 0x2bn];
    const good = eret(ERETU, u);
    expect(good.ev).toBeUndefined();
    expect([good.m.cpu.cs, good.m.cpu.ss, good.m.cpu.rip]).toEqual([0x33, 0x2b, UCODE]);
    const bad = (k: number, v: bigint, setup?: (m: Machine) => void) => eret(ERETU, u.map((w, i) => (i === k ? v : w)), setup).ev;
    for (const ev of [
      bad(1, 0x10n), bad(1, 0x1_0000_0033n), bad(2, BigInt(0x202 | F.IOPL)), bad(4, 0x18n), bad(0, 0x0000800000000000n),
      bad(1, 0x33n, (m) => fredOf(m).setStackLevel(m.cpu, 1)),
    ]) expect(ev && [ev.vector, ev.errorCode]).toEqual([13, 0]);
    expect(eret(ERETU, u.map((w, i) => (i === 1 ? 0x23n : w))).reason).toBe("unsupported");
  });

  test("ERETS / ERETU without FRED (IDT delivery) -> #UD; at CPL 3 with FRED -> #UD", () => {
    for (const bytes of [ERETS, ERETU]) {
      const m = new Machine({ bits: 64 });
      m.map(CODE, 0x1000, Perm.R | Perm.X).load(CODE, bytes);
      m.cpu.rip = CODE;
      let ev: ExceptionEvent | undefined;
      m.onException((_c, e) => { ev = e; return "stop"; });
      m.run({ maxSteps: 1 });
      expect(ev?.vector).toBe(6);

      const u = fredMachine([]);
      u.load(UCODE, bytes);
      u.cpu.setCs(SEL64.USER_CS); u.cpu.ss = SEL64.USER_DS; u.cpu.rip = UCODE; u.cpu.sp = USTACK + 0x100n;
      let uev: ExceptionEvent | undefined;
      u.onException((_c, e) => { uev = e; return "stop"; });
      u.run({ maxSteps: 1 });
      expect([uev?.vector, uev?.cpl]).toEqual([6, 3]);
    }
  });
});

describe("faults during FRED delivery", () => {
  // R = STACK + 0x40: the frame would be [STACK − 64, STACK), which is not mapped.
  const R = STACK + 0x40n;

  test("same stack: #BP -> #PF -> #DF all fault on the same frame -> triple fault", () => {
    const m = fredMachine([INT3]);
    m.cpu.sp = R;
    const seen: number[] = [];
    m.onException((_c, e) => { seen.push(e.vector); });
    expect(m.run({ maxSteps: 5 }).reason).toBe("triple-fault");
    expect(seen).toEqual([3, 14, 8]);
    expect(m.cpu.cr2).toBe(STACK - 8n);                       // the first frame write is the top word
  });

  test("nested #PF at stack level 1: FRED_RSP1, nested bit, CR2; ERETS drops back to level 0", () => {
    const m = fredMachine([INT3], { stackLevels: { rsp: [LV[0], LV[1], LV[2]], vectors: { 14: 1 } } }, ERETS);
    m.cpu.sp = R;
    m.cpu.flags = 0x2 | F.IF;
    expect(m.run({ maxSteps: 5, until: KENTRY }).reason).toBe("until");
    const f = LV[0] - 64n;
    expect(m.cpu.sp).toBe(f);
    expect(frameAt(m, f)).toEqual([
      2n,                                                     // W, not present, supervisor
      CODE,                                                   // the int3 itself (restartable)
      0x10n,                                                  // level 0 when it happened
      BigInt(0x2 | F.IF | F.RF),
      R,
      0x0603_000e_0000_0018n,                                 // vector 14, type 3, l, nested
      STACK - 8n,                                             // CR2
      0n,
    ]);
    const fd = fredOf(m);
    expect(fd.stackLevel(m.cpu)).toBe(1);
    expect(m.run({ maxSteps: 1 }).steps).toBe(1);            // ERETS
    expect([m.cpu.rip, m.cpu.sp, m.cpu.flags, fd.stackLevel(m.cpu)]).toEqual([CODE, R, 0x2 | F.IF | F.RF, 0]);
  });

  test("#DF at stack level 3 is delivered there, without the nested bit", () => {
    const m = fredMachine([INT3], { stackLevels: { rsp: [LV[0], LV[1], LV[2]], vectors: { 8: 3 } } });
    m.cpu.sp = R;
    const seen: number[] = [];
    m.onException((_c, e) => { seen.push(e.vector); });
    expect(m.run({ maxSteps: 5, until: KENTRY }).reason).toBe("until");
    expect(seen).toEqual([3, 14, 8]);
    const f = LV[2] - 64n;
    expect(m.cpu.sp).toBe(f);
    expect(frameAt(m, f)).toEqual([0n, CODE, 0x10n, 0x2n, R, 0x0203_0008_0000_0018n, 0n, 0n]);
    expect(fredOf(m).stackLevel(m.cpu)).toBe(3);
  });
});
