import { describe, expect, test } from "vitest";
import { F, Perm, SEL32, SEL64 } from "../src/index.js";
import {
  code, deliveredFlags, LAYOUT, EDGE_OFF, type Ev, expectEvents, expectState, frame64, gprs, peek, rig, type Rig, RO_OFF, runTo,
  seedRegs, toUser, words,
} from "./support/fault-rig.js";

// Every fault path, with the exact event the exception hook sees, the exact frame pushed
// (read back from memory) and the CPU state after delivery. Expected values follow the SDM
// (Vol. 3A §6.12–6.15 and Table 6-5, Vol. 2 INT n/IRET/POPF), not the implementation.

const PF = { P: 1, W: 2, U: 4, I: 16 } as const;
/** Flags a faulting instruction runs with: TF, NT and AC set so delivery's clearing is visible. */
const FT = 0x2 | F.IF | F.CF | F.ZF | F.DF | F.AC | F.TF | F.NT;
/** Flags for software interrupts and user code. */
const FB = 0x2 | F.IF | F.CF | F.ZF | F.DF;
const NONCANON = 0x0000800000000000n;

/** The state a delivery started from. */
interface From { cs: number; ss: number; sp: bigint; flags: number }

function from(r: Rig): From {
  const c = r.m.cpu;
  return { cs: c.cs, ss: c.ss, sp: c.sp, flags: c.flags };
}

interface Delivery {
  vector: number;
  kind: "fault" | "software" | "abort";
  errorCode?: number;
  savedIp: bigint;
  /** The state when the event was raised. */
  f: From;
  /** 64-bit IST slot of the gate. */
  ist?: number;
  gate?: "interrupt" | "trap";
  /** The stack the frame is pushed on when not the current one or RSP0/IST (for checks on RSP0 variants). */
  base?: bigint;
}

/**
 * Checks the frame pushed for one delivery and the state after it, computed from the SDM:
 * 64-bit: new stack = IST, else RSP0 on a privilege change, else RSP; aligned down to 16;
 * SS, RSP, RFLAGS, CS, RIP [, error code]; SS becomes NULL (RPL 0) on a privilege change.
 * 32-bit: new stack = ESP0:SS0 on a privilege change (SS, ESP pushed), else ESP, unaligned.
 */
function expectDelivered(r: Rig, d: Delivery): void {
  const c = r.m.cpu;
  const user = (d.f.cs & 3) === 3;
  const image = d.kind === "fault" ? d.f.flags | F.RF : d.f.flags;
  const ec = d.errorCode === undefined ? [] : [BigInt(d.errorCode)];
  let at: bigint, ss: number, frame: bigint[];
  if (r.bits === 64) {
    const base = d.base ?? (d.ist ? c.tss.ist[d.ist] : user ? c.tss.sp[0] : d.f.sp);
    at = frame64(base, d.errorCode !== undefined);
    frame = [...ec, d.savedIp, BigInt(d.f.cs), BigInt(image), d.f.sp, BigInt(d.f.ss)];
    ss = user ? 0 : d.f.ss;
  } else {
    const inner = [...ec, d.savedIp, BigInt(d.f.cs), BigInt(image)];
    frame = user ? [...inner, d.f.sp, BigInt(d.f.ss)] : inner;
    at = BigInt.asUintN(32, (d.base ?? (user ? c.tss.sp[0] : d.f.sp)) - BigInt(4 * frame.length));
    ss = user ? c.tss.ss[0] : d.f.ss;
  }
  expect(words(r, at, frame.length).map((w) => "0x" + w.toString(16))).toEqual(frame.map((w) => "0x" + w.toString(16)));
  expectState(r, { rip: r.h(d.vector), sp: at, cs: r.kcs, ss, flags: deliveredFlags(d.f.flags, d.gate) });
}

const REX = (bits: 32 | 64): number[] => (bits === 64 ? [0x48] : []);
/** mov (%rax),%rbx / mov (%eax),%ebx */
const LOAD = (bits: 32 | 64): number[] => [...REX(bits), 0x8b, 0x18];
/** mov %rbx,(%rax) / mov %ebx,(%eax) */
const STORE = (bits: 32 | 64): number[] => [...REX(bits), 0x89, 0x18];
const JMP_RAX = [0xff, 0xe0];
const PUSH_RAX = [0x50];
const IRET = (bits: 32 | 64): number[] => (bits === 64 ? [0x48, 0xcf] : [0xcf]);
const W = (bits: 32 | 64): bigint => (bits === 64 ? 8n : 4n);

/** Runs one faulting instruction at CPL 0 or 3 and checks event, frame and state. */
function single(r: Rig, want: { vector: number; errorCode?: number; cr2?: bigint; savedIp?: bigint; ist?: number }): void {
  const c = r.m.cpu;
  const f = from(r);
  const at = c.rip;
  const before = gprs(r);
  runTo(r, want.vector);
  const savedIp = want.savedIp ?? at;
  const ev: Ev = { vector: want.vector, kind: "fault", savedIp, cpl: f.cs & 3, sp: f.sp };
  if (want.errorCode !== undefined) ev.errorCode = want.errorCode;
  if (want.cr2 !== undefined) ev.cr2 = want.cr2;
  expectEvents(r, [ev]);
  expectDelivered(r, { vector: want.vector, kind: "fault", errorCode: want.errorCode, savedIp, f, ist: want.ist });
  expect(gprs(r)).toEqual(before);
  if (want.cr2 !== undefined) expect(c.cr2).toBe(want.cr2);
  else expect(c.cr2).toBe(0n);
}

for (const bits of [64, 32] as const) {
  const name = `x86_${bits === 64 ? "64" : "32"}`;

  describe(`${name} #PF`, () => {
    const setup = (bytes: number[], rax: bigint, user = false): Rig => {
      const r = rig(bits);
      seedRegs(r);
      if (user) toUser(r, bytes); else code(r, bytes);
      r.m.cpu.setReg(0, rax);
      r.m.cpu.flags = user ? FB : FT;
      return r;
    };

    test("read of a non-present page: error code 0, CR2 = address", () => {
      const r = setup(LOAD(bits), LAYOUT[bits].khole + 0x123n);
      single(r, { vector: 14, errorCode: 0, cr2: r.L.khole + 0x123n });
    });

    test("write to a non-present page: W", () => {
      const r = setup(STORE(bits), LAYOUT[bits].khole + 0x456n);
      single(r, { vector: 14, errorCode: PF.W, cr2: r.L.khole + 0x456n });
    });

    test("fetch from a non-present page: I, saved IP = the target", () => {
      const t = LAYOUT[bits].khole + 0x10n;
      const r = setup(JMP_RAX, t);
      const f = from(r);
      runTo(r, 14);
      expectEvents(r, [{ vector: 14, kind: "fault", errorCode: PF.I, cr2: t, savedIp: t, cpl: 0, sp: f.sp }]);
      expectDelivered(r, { vector: 14, kind: "fault", errorCode: PF.I, savedIp: t, f });
      expect(r.m.cpu.cr2).toBe(t);
    });

    test("an instruction straddling into a non-present page: I, CR2 = the next page, saved IP = the instruction", () => {
      const r = rig(bits);
      seedRegs(r);
      const page = r.L.kdata + 0x6000n; // executable, with nothing mapped after it
      r.m.map(page, 0x1000, Perm.R | Perm.X);
      const head = LOAD(bits).slice(0, -1); // the ModRM byte would be on the next page
      const at = page + 0x1000n - BigInt(head.length);
      code(r, head, at);
      r.m.cpu.flags = FT;
      single(r, { vector: 14, errorCode: PF.I, cr2: page + 0x1000n });
    });

    test("write to a read-only page: P|W", () => {
      const a = LAYOUT[bits].kdata + RO_OFF + 8n;
      const r = setup(STORE(bits), a);
      single(r, { vector: 14, errorCode: PF.P | PF.W, cr2: a });
      expect([...peek(r.m, a, 8)]).toEqual([0, 0, 0, 0, 0, 0, 0, 0]);
    });

    test("fetch from a non-executable page: P|I", () => {
      const t = LAYOUT[bits].kdata + 0x40n;
      const r = setup(JMP_RAX, t);
      const f = from(r);
      runTo(r, 14);
      expectEvents(r, [{ vector: 14, kind: "fault", errorCode: PF.P | PF.I, cr2: t, savedIp: t, cpl: 0, sp: f.sp }]);
      expectDelivered(r, { vector: 14, kind: "fault", errorCode: PF.P | PF.I, savedIp: t, f });
    });

    test("CPL 3 read of a non-present page: U; delivered on RSP0/ESP0", () => {
      const r = setup(LOAD(bits), LAYOUT[bits].uhole + 8n, true);
      single(r, { vector: 14, errorCode: PF.U, cr2: r.L.uhole + 8n });
    });

    test("CPL 3 read of a supervisor page: P|U", () => {
      const r = setup(LOAD(bits), LAYOUT[bits].kdata + 0x10n, true);
      single(r, { vector: 14, errorCode: PF.P | PF.U, cr2: r.L.kdata + 0x10n });
    });

    test("CPL 3 write to a supervisor page: P|W|U, nothing written", () => {
      const r = setup(STORE(bits), LAYOUT[bits].kdata + 0x20n, true);
      single(r, { vector: 14, errorCode: PF.P | PF.W | PF.U, cr2: r.L.kdata + 0x20n });
      expect([...peek(r.m, r.L.kdata + 0x20n, 8)]).toEqual([0, 0, 0, 0, 0, 0, 0, 0]);
    });

    test("CPL 3 fetch from a supervisor page: P|U|I", () => {
      const t = LAYOUT[bits].kcode + 0x100n;
      const r = setup(JMP_RAX, t, true);
      const f = from(r);
      runTo(r, 14);
      expectEvents(r, [{ vector: 14, kind: "fault", errorCode: PF.P | PF.U | PF.I, cr2: t, savedIp: t, cpl: 3, sp: f.sp }]);
      expectDelivered(r, { vector: 14, kind: "fault", errorCode: PF.P | PF.U | PF.I, savedIp: t, f });
    });

    test("CPL 3 fetch from a non-executable user page: P|U|I", () => {
      const t = LAYOUT[bits].udata + 0x100n;
      const r = setup(JMP_RAX, t, true);
      const f = from(r);
      runTo(r, 14);
      expectEvents(r, [{ vector: 14, kind: "fault", errorCode: PF.P | PF.U | PF.I, cr2: t, savedIp: t, cpl: 3, sp: f.sp }]);
      expectDelivered(r, { vector: 14, kind: "fault", errorCode: PF.P | PF.U | PF.I, savedIp: t, f });
    });

    test("a write straddling into a non-present page writes no byte of the first page; CR2 = the first byte on the missing page", () => {
      const edge = LAYOUT[bits].kdata + EDGE_OFF + 0x1000n;
      for (const back of bits === 64 ? [1n, 4n, 7n] : [1n, 2n, 3n]) {
        const r = setup(STORE(bits), edge - back);
        r.m.load(edge - 16n, new Uint8Array(16).fill(0xa5));
        r.m.cpu.setReg(3, bits === 64 ? 0x0102030405060708n : 0x01020304n);
        let writes = 0;
        r.m.onWrite((a) => { if (a >= edge - 16n && a < edge) writes++; });
        single(r, { vector: 14, errorCode: PF.W, cr2: edge });
        expect([...peek(r.m, edge - 16n, 16)]).toEqual(new Array<number>(16).fill(0xa5));
        expect(writes).toBe(0);
      }
    });

    test("a push onto a non-present stack page at CPL 3 leaves RSP unchanged (W|U, CR2 = RSP - size)", () => {
      const r = rig(bits);
      seedRegs(r);
      toUser(r, PUSH_RAX, r.L.ustack); // the page below the user stack is not mapped
      r.m.cpu.flags = FB;
      single(r, { vector: 14, errorCode: PF.W | PF.U, cr2: r.L.ustack - W(bits) });
    });

    if (bits === 64) {
      test("a push onto a non-present stack page at CPL 0 leaves RSP unchanged (#PF through an IST stack)", () => {
        const r = rig(bits);
        seedRegs(r);
        code(r, PUSH_RAX);
        r.m.cpu.sp = r.L.kstack; // bottom of the kernel stack; the page below is not mapped
        r.m.cpu.flags = FT;
        r.m.setGate(14, { handler: r.h(14), ist: 1 });
        single(r, { vector: 14, errorCode: PF.W, cr2: r.L.kstack - 8n, ist: 1 });
      });
    }
  });

  describe(`${name} #GP, #SS, #NP`, () => {
    if (bits === 64) {
      test("a non-canonical data address: #GP(0), no CR2", () => {
        for (const [bytes, a] of [[LOAD(64), NONCANON], [STORE(64), 0xffff7fffffffff00n]] as const) {
          const r = rig(64);
          seedRegs(r);
          code(r, [...bytes]);
          r.m.cpu.setReg(0, a);
          r.m.cpu.flags = FT;
          single(r, { vector: 13, errorCode: 0 });
        }
      });

      test("jmp *%rax to a non-canonical target: #GP(0) on the jmp, nothing changed", () => {
        const r = rig(64);
        seedRegs(r);
        code(r, JMP_RAX);
        r.m.cpu.setReg(0, NONCANON);
        r.m.cpu.flags = FT;
        single(r, { vector: 13, errorCode: 0 });
        expect(r.m.cpu.reg(0)).toBe(NONCANON);
      });

      test("call *%rax to a non-canonical target: #GP(0) before the push, nothing written, RSP unchanged", () => {
        const r = rig(64);
        seedRegs(r);
        r.m.setGate(13, { handler: r.h(13), ist: 1 }); // keep the frame off the current stack
        code(r, [0xff, 0xd0]);
        r.m.cpu.setReg(0, NONCANON);
        r.m.cpu.flags = FT;
        const sp = r.m.cpu.sp;
        r.m.load(sp - 8n, new Uint8Array(8).fill(0x5c));
        single(r, { vector: 13, errorCode: 0, ist: 1 });
        expect([...peek(r.m, sp - 8n, 8)]).toEqual(new Array<number>(8).fill(0x5c));
      });

      test("an RBP-based access to a non-canonical address: #SS(0)", () => {
        const r = rig(64);
        seedRegs(r);
        code(r, [0x48, 0x8b, 0x45, 0x00]); // mov 0(%rbp),%rax
        r.m.cpu.setReg(5, NONCANON + 0x40n);
        r.m.cpu.flags = FT;
        single(r, { vector: 12, errorCode: 0 });
      });

      test("a push with a non-canonical RSP: #SS(0), RSP unchanged (delivered through IST)", () => {
        const r = rig(64);
        seedRegs(r);
        code(r, PUSH_RAX);
        r.m.cpu.sp = NONCANON + 0x100n;
        r.m.cpu.flags = FT;
        r.m.setGate(12, { handler: r.h(12), ist: 1 });
        single(r, { vector: 12, errorCode: 0, ist: 1 });
      });
    }

    test("HLT at CPL 3: #GP(0)", () => {
      const r = rig(bits);
      seedRegs(r);
      toUser(r, [0xf4]);
      r.m.cpu.flags = FB;
      single(r, { vector: 13, errorCode: 0 });
    });

    test("CLI at CPL 3 with IOPL 0: #GP(0), IF unchanged in the image", () => {
      const r = rig(bits);
      seedRegs(r);
      toUser(r, [0xfa]);
      r.m.cpu.flags = FB;
      single(r, { vector: 13, errorCode: 0 });
    });

    const softThenFault = (r: Rig, vector: number, len: bigint, second: { vector: number; errorCode: number }): void => {
      const f = from(r);
      const at = r.m.cpu.rip;
      runTo(r, second.vector);
      expectEvents(r, [
        { vector, kind: "software", savedIp: at + len, ip: at, cpl: f.cs & 3, sp: f.sp },
        { vector: second.vector, kind: "fault", errorCode: second.errorCode, savedIp: at, cpl: f.cs & 3, sp: f.sp },
      ]);
      expectDelivered(r, { vector: second.vector, kind: "fault", errorCode: second.errorCode, savedIp: at, f });
    };

    test("INT 0x80 from CPL 3 through a DPL 0 gate: #GP(0x80*8+2)", () => {
      const r = rig(bits);
      r.m.setGate(0x80, { handler: r.h(0x80), dpl: 0 });
      toUser(r, [0xcd, 0x80]);
      r.m.cpu.flags = FB;
      softThenFault(r, 0x80, 2n, { vector: 13, errorCode: 0x80 * 8 + 2 });
    });

    test("INT3 from CPL 3 through a DPL 0 gate: #GP(3*8+2)", () => {
      const r = rig(bits);
      r.m.setGate(3, { handler: r.h(3), dpl: 0 });
      toUser(r, [0xcc]);
      r.m.cpu.flags = FB;
      softThenFault(r, 3, 1n, { vector: 13, errorCode: 3 * 8 + 2 });
    });

    test("the DPL check comes before the present check for INT n", () => {
      const r = rig(bits);
      r.m.setGate(0x80, { handler: r.h(0x80), dpl: 0, present: false });
      toUser(r, [0xcd, 0x80]);
      r.m.cpu.flags = FB;
      softThenFault(r, 0x80, 2n, { vector: 13, errorCode: 0x80 * 8 + 2 });
    });

    test("INT n with no gate: #GP(n*8+2), EXT clear for a software interrupt", () => {
      const r = rig(bits);
      code(r, [0xcd, 0x40]);
      r.m.cpu.flags = FB;
      softThenFault(r, 0x40, 2n, { vector: 13, errorCode: 0x40 * 8 + 2 });
    });

    test("INT n through a not-present gate: #NP(n*8+2)", () => {
      const r = rig(bits);
      r.m.setGate(0x80, { handler: r.h(0x80), dpl: 3, present: false });
      toUser(r, [0xcd, 0x80]);
      r.m.cpu.flags = FB;
      softThenFault(r, 0x80, 2n, { vector: 11, errorCode: 0x80 * 8 + 2 });
    });

    const faultThenFault = (r: Rig, first: number, second: { vector: number; errorCode: number }): void => {
      const f = from(r);
      const at = r.m.cpu.rip;
      runTo(r, second.vector);
      expectEvents(r, [
        { vector: first, kind: "fault", savedIp: at, cpl: f.cs & 3, sp: f.sp },
        { vector: second.vector, kind: "fault", errorCode: second.errorCode, savedIp: at, cpl: f.cs & 3, sp: f.sp },
      ]);
      expectDelivered(r, { vector: second.vector, kind: "fault", errorCode: second.errorCode, savedIp: at, f });
    };

    test("#UD with no gate: #GP(6*8+2+EXT) delivered serially (benign, contributory)", () => {
      const r = rig(bits);
      r.m.cpu.idt[6] = undefined;
      code(r, [0x0f, 0x0b]);
      r.m.cpu.flags = FT;
      faultThenFault(r, 6, { vector: 13, errorCode: 6 * 8 + 2 + 1 });
    });

    test("#UD through a not-present gate: #NP(6*8+2+EXT)", () => {
      const r = rig(bits);
      r.m.setGate(6, { handler: r.h(6), present: false });
      toUser(r, [0x0f, 0x0b]);
      r.m.cpu.flags = FB;
      faultThenFault(r, 6, { vector: 11, errorCode: 6 * 8 + 2 + 1 });
    });
  });

  describe(`${name} #UD`, () => {
    const ud = (bytes: number[], detail: RegExp): void => {
      const r = rig(bits);
      seedRegs(r);
      code(r, bytes);
      r.m.cpu.flags = FT;
      single(r, { vector: 6 });
      expect(r.events[0].errorCode).toBeUndefined();
      expect(r.events[0].detail).toMatch(detail);
    };
    test("UD2", () => ud([0x0f, 0x0b], /^UD2$/));
    test("an invalid opcode", () => ud(bits === 64 ? [0x06] : [0x0f, 0x04], /^invalid opcode$/));
    test("rep movsb is not modeled", () => ud([0xf3, 0xa4], /^not modeled: rep movsb/));
    test("fld is not modeled", () => ud([0xd9, 0x00], /^not modeled: flds/));
  });

  describe(`${name} double faults (SDM Table 6-5)`, () => {
    test("contributory then contributory: HLT at CPL 3 with no #GP gate → #DF(0)", () => {
      const r = rig(bits);
      r.m.cpu.idt[13] = undefined;
      toUser(r, [0xf4]);
      r.m.cpu.flags = FB;
      const f = from(r);
      runTo(r, 8);
      expectEvents(r, [
        { vector: 13, kind: "fault", errorCode: 0, savedIp: r.L.ucode, cpl: 3, sp: f.sp },
        { vector: 8, kind: "abort", errorCode: 0, savedIp: r.L.ucode, cpl: 3, sp: f.sp },
      ]);
      expectDelivered(r, { vector: 8, kind: "abort", errorCode: 0, savedIp: r.L.ucode, f });
    });

    test("page fault then contributory: #PF with no gate → #DF(0)", () => {
      const r = rig(bits);
      r.m.cpu.idt[14] = undefined;
      code(r, LOAD(bits));
      r.m.cpu.setReg(0, r.L.khole);
      r.m.cpu.flags = FT;
      const f = from(r);
      runTo(r, 8);
      expectEvents(r, [
        { vector: 14, kind: "fault", errorCode: 0, cr2: r.L.khole, savedIp: r.L.kcode, cpl: 0, sp: f.sp },
        { vector: 8, kind: "abort", errorCode: 0, savedIp: r.L.kcode, cpl: 0, sp: f.sp },
      ]);
      expectDelivered(r, { vector: 8, kind: "abort", errorCode: 0, savedIp: r.L.kcode, f });
    });

    test("contributory then contributory: #UD → #GP (no gate) → #GP (no gate) → #DF(0)", () => {
      const r = rig(bits);
      r.m.cpu.idt[6] = undefined;
      r.m.cpu.idt[13] = undefined;
      code(r, [0x0f, 0x0b]);
      r.m.cpu.flags = FT;
      const f = from(r);
      runTo(r, 8);
      expectEvents(r, [
        { vector: 6, kind: "fault", savedIp: r.L.kcode, cpl: 0, sp: f.sp },
        { vector: 13, kind: "fault", errorCode: 6 * 8 + 2 + 1, savedIp: r.L.kcode, cpl: 0, sp: f.sp },
        { vector: 8, kind: "abort", errorCode: 0, savedIp: r.L.kcode, cpl: 0, sp: f.sp },
      ]);
      expectDelivered(r, { vector: 8, kind: "abort", errorCode: 0, savedIp: r.L.kcode, f });
    });

    if (bits === 64) {
      test("INT3 with RSP on a non-present page: #PF delivered serially (benign first) through IST", () => {
        const r = rig(64);
        r.m.setGate(14, { handler: r.h(14), ist: 1 });
        code(r, [0xcc]);
        r.m.cpu.sp = r.L.khole + 0x800n;
        r.m.cpu.flags = FB;
        const f = from(r);
        runTo(r, 14);
        const cr2 = r.L.khole + 0x7f8n;
        expectEvents(r, [
          { vector: 3, kind: "software", savedIp: r.L.kcode + 1n, ip: r.L.kcode, cpl: 0, sp: f.sp },
          { vector: 14, kind: "fault", errorCode: PF.W, cr2, savedIp: r.L.kcode, cpl: 0, sp: f.sp },
        ]);
        expectDelivered(r, { vector: 14, kind: "fault", errorCode: PF.W, savedIp: r.L.kcode, f, ist: 1 });
        expect(r.m.cpu.cr2).toBe(cr2);
      });

      test("… and when the #PF's delivery faults on the same stack: #DF(0) through a valid IST stack", () => {
        const r = rig(64);
        r.m.setGate(8, { handler: r.h(8), ist: 2 });
        code(r, [0xcc]);
        r.m.cpu.sp = r.L.khole + 0x800n;
        r.m.cpu.flags = FB;
        const f = from(r);
        runTo(r, 8);
        const cr2 = r.L.khole + 0x7f8n;
        expectEvents(r, [
          { vector: 3, kind: "software", savedIp: r.L.kcode + 1n, ip: r.L.kcode, cpl: 0, sp: f.sp },
          { vector: 14, kind: "fault", errorCode: PF.W, cr2, savedIp: r.L.kcode, cpl: 0, sp: f.sp },
          { vector: 8, kind: "abort", errorCode: 0, savedIp: r.L.kcode, cpl: 0, sp: f.sp },
        ]);
        expectDelivered(r, { vector: 8, kind: "abort", errorCode: 0, savedIp: r.L.kcode, f, ist: 2 });
        expect(r.m.cpu.cr2).toBe(cr2);
      });

      test("… and when #DF's own delivery faults: triple fault, the run ends with the #DF event", () => {
        const r = rig(64);
        r.m.setGate(8, { handler: r.h(8), ist: 3 });
        r.m.cpu.tss.ist[3] = r.L.khole + 0x2000n;
        code(r, [0xcc]);
        r.m.cpu.sp = r.L.khole + 0x800n;
        r.m.cpu.flags = FB;
        const f = from(r);
        const res = r.m.run({ maxSteps: 20 });
        expect(res.reason).toBe("triple-fault");
        const df = { vector: 8, kind: "abort", errorCode: 0, savedIp: r.L.kcode, cpl: 0, sp: f.sp } as const;
        expectEvents(r, [
          { vector: 3, kind: "software", savedIp: r.L.kcode + 1n, ip: r.L.kcode, cpl: 0, sp: f.sp },
          { vector: 14, kind: "fault", errorCode: PF.W, cr2: r.L.khole + 0x7f8n, savedIp: r.L.kcode, cpl: 0, sp: f.sp },
          df,
        ]);
        expect(res.event).toBe(r.events[2]);
        expect(res.detail).toMatch(/#PF\(2\) at 0xffffc90000101ff8 .*while delivering #DF: shutdown/);
        expect({ sp: r.m.cpu.sp, cs: r.m.cpu.cs, ss: r.m.cpu.ss, flags: r.m.cpu.flags }).toEqual({ sp: f.sp, cs: f.cs, ss: f.ss, flags: f.flags });
      });

      test("contributory then page fault: #GP whose delivery takes #PF is handled serially", () => {
        const r = rig(64);
        r.m.setGate(14, { handler: r.h(14), ist: 1 });
        code(r, LOAD(64));
        r.m.cpu.setReg(0, NONCANON);
        r.m.cpu.sp = r.L.khole + 0x800n;
        r.m.cpu.flags = FT;
        const f = from(r);
        runTo(r, 14);
        expectEvents(r, [
          { vector: 13, kind: "fault", errorCode: 0, savedIp: r.L.kcode, cpl: 0, sp: f.sp },
          { vector: 14, kind: "fault", errorCode: PF.W, cr2: r.L.khole + 0x7f8n, savedIp: r.L.kcode, cpl: 0, sp: f.sp },
        ]);
        expectDelivered(r, { vector: 14, kind: "fault", errorCode: PF.W, savedIp: r.L.kcode, f, ist: 1 });
      });

      test("INT 0x80 from CPL 3 with RSP0 on a non-present page: #PF (supervisor write), #PF again → #DF through IST", () => {
        const r = rig(64);
        r.m.setGate(8, { handler: r.h(8), ist: 2 });
        r.m.cpu.tss.sp[0] = r.L.khole + 0x1000n;
        toUser(r, [0xcd, 0x80]);
        r.m.cpu.flags = FB;
        const f = from(r);
        runTo(r, 8);
        expectEvents(r, [
          { vector: 0x80, kind: "software", savedIp: r.L.ucode + 2n, ip: r.L.ucode, cpl: 3, sp: f.sp },
          { vector: 14, kind: "fault", errorCode: PF.W, cr2: r.L.khole + 0xff8n, savedIp: r.L.ucode, cpl: 3, sp: f.sp },
          { vector: 8, kind: "abort", errorCode: 0, savedIp: r.L.ucode, cpl: 3, sp: f.sp },
        ]);
        expectDelivered(r, { vector: 8, kind: "abort", errorCode: 0, savedIp: r.L.ucode, f, ist: 2 });
      });
    } else {
      test("INT3 with ESP on a non-present page: #PF, then #PF again → #DF on the same stack → triple fault", () => {
        const r = rig(32);
        code(r, [0xcc]);
        r.m.cpu.sp = r.L.khole + 0x802n;
        r.m.cpu.flags = FB;
        const f = from(r);
        const res = r.m.run({ maxSteps: 20 });
        expect(res.reason).toBe("triple-fault");
        expectEvents(r, [
          { vector: 3, kind: "software", savedIp: r.L.kcode + 1n, ip: r.L.kcode, cpl: 0, sp: f.sp },
          { vector: 14, kind: "fault", errorCode: PF.W, cr2: r.L.khole + 0x7fen, savedIp: r.L.kcode, cpl: 0, sp: f.sp },
          { vector: 8, kind: "abort", errorCode: 0, savedIp: r.L.kcode, cpl: 0, sp: f.sp },
        ]);
        expect(res.event).toBe(r.events[2]);
        expect(r.m.cpu.cr2).toBe(r.L.khole + 0x7fen);
        expect({ sp: r.m.cpu.sp, cs: r.m.cpu.cs, ss: r.m.cpu.ss }).toEqual({ sp: f.sp, cs: f.cs, ss: f.ss });
      });

      test("contributory then page fault: #GP from CPL 3 with ESP0 on a non-present page → #PF serially, then #DF, then shutdown", () => {
        const r = rig(32);
        r.m.cpu.tss.sp[0] = r.L.khole + 0x800n;
        toUser(r, [0xf4]);
        r.m.cpu.flags = FB;
        const f = from(r);
        const res = r.m.run({ maxSteps: 20 });
        expect(res.reason).toBe("triple-fault");
        expectEvents(r, [
          { vector: 13, kind: "fault", errorCode: 0, savedIp: r.L.ucode, cpl: 3, sp: f.sp },
          { vector: 14, kind: "fault", errorCode: PF.W, cr2: r.L.khole + 0x7fcn, savedIp: r.L.ucode, cpl: 3, sp: f.sp },
          { vector: 8, kind: "abort", errorCode: 0, savedIp: r.L.ucode, cpl: 3, sp: f.sp },
        ]);
        expect(res.event).toBe(r.events[2]);
      });
    }
  });

  describe(`${name} delivery frames`, () => {
    if (bits === 64) {
      for (const gate of ["interrupt", "trap"] as const) {
        test(`CPL 0 INT3 (${gate} gate): frame at (RSP & ~15) - 40, both alignment classes and odd RSPs; padding untouched`, () => {
          for (const d of [0n, 8n, 1n, 7n, 15n]) {
            const r = rig(64);
            r.m.setGate(3, { handler: r.h(3), dpl: 3, type: gate });
            code(r, [0xcc]);
            const sp = r.L.kstack + 0x2000n + d;
            r.m.load(r.L.kstack + 0x1f00n, new Uint8Array(0x200).fill(0x5c));
            r.m.cpu.sp = sp;
            r.m.cpu.flags = FB;
            const f = from(r);
            runTo(r, 3);
            expectEvents(r, [{ vector: 3, kind: "software", savedIp: r.L.kcode + 1n, ip: r.L.kcode, cpl: 0, sp }]);
            expectDelivered(r, { vector: 3, kind: "software", savedIp: r.L.kcode + 1n, f, gate });
            expect(r.m.cpu.sp % 16n).toBe(8n);
            expect([...peek(r.m, sp & ~15n, Number(sp - (sp & ~15n)) + 16)]).toEqual(new Array<number>(Number(sp - (sp & ~15n)) + 16).fill(0x5c));
            expect(r.m.cpu.flags & F.IF).toBe(gate === "trap" ? F.IF : 0);
          }
        });
      }

      test("IST switches stacks even CPL 0 → CPL 0; SS kept; an unaligned IST pointer is aligned", () => {
        for (const off of [0n, 4n, 8n]) {
          const r = rig(64);
          r.m.setGate(3, { handler: r.h(3), dpl: 3, ist: 1 });
          r.m.cpu.tss.ist[1] = r.ist(1) - off;
          code(r, [0xcc]);
          r.m.cpu.flags = FB;
          const f = from(r);
          runTo(r, 3);
          expectDelivered(r, { vector: 3, kind: "software", savedIp: r.L.kcode + 1n, f, ist: 1 });
          expect(r.m.cpu.ss).toBe(SEL64.KERNEL_DS);
          expect(r.m.cpu.sp).toBe(((r.ist(1) - off) & ~15n) - 40n);
        }
      });

      test("CPL 3 → 0 loads TSS.RSP0 (aligned) and SS = NULL with RPL 0", () => {
        for (const off of [0n, 8n, 3n]) {
          const r = rig(64);
          r.m.cpu.tss.sp[0] = r.sp0 - off;
          toUser(r, [0xcd, 0x80], r.L.ustack + 0x1234n);
          r.m.cpu.flags = FB;
          const f = from(r);
          runTo(r, 0x80);
          expectEvents(r, [{ vector: 0x80, kind: "software", savedIp: r.L.ucode + 2n, ip: r.L.ucode, cpl: 3, sp: f.sp }]);
          expectDelivered(r, { vector: 0x80, kind: "software", savedIp: r.L.ucode + 2n, f });
          expect(r.m.cpu.ss).toBe(0);
          expect(r.m.cpu.sp).toBe(((r.sp0 - off) & ~15n) - 40n);
        }
      });

      test("CPL 3 → 0 through an IST gate uses the IST stack, SS = NULL", () => {
        const r = rig(64);
        r.m.setGate(3, { handler: r.h(3), dpl: 3, ist: 4 });
        toUser(r, [0xcc]);
        r.m.cpu.flags = FB;
        const f = from(r);
        runTo(r, 3);
        expectDelivered(r, { vector: 3, kind: "software", savedIp: r.L.ucode + 1n, f, ist: 4 });
        expect(r.m.cpu.ss).toBe(0);
      });
    } else {
      for (const gate of ["interrupt", "trap"] as const) {
        test(`CPL 0 INT3 (${gate} gate): EFLAGS, CS, EIP only, no alignment, any ESP mod 4`, () => {
          for (const d of [0n, 1n, 2n, 3n]) {
            const r = rig(32);
            r.m.setGate(3, { handler: r.h(3), dpl: 3, type: gate });
            code(r, [0xcc]);
            const sp = r.L.kstack + 0x2000n + d;
            r.m.load(sp, new Uint8Array(8).fill(0x5c));
            r.m.cpu.sp = sp;
            r.m.cpu.flags = FB;
            const f = from(r);
            runTo(r, 3);
            expectEvents(r, [{ vector: 3, kind: "software", savedIp: r.L.kcode + 1n, ip: r.L.kcode, cpl: 0, sp }]);
            expectDelivered(r, { vector: 3, kind: "software", savedIp: r.L.kcode + 1n, f, gate });
            expect(r.m.cpu.sp).toBe(sp - 12n);
            expect([...peek(r.m, sp, 8)]).toEqual(new Array<number>(8).fill(0x5c));
          }
        });
      }

      test("CPL 3 → 0 pushes SS, ESP, EFLAGS, CS, EIP on TSS.ESP0 (unaligned too) and loads SS0", () => {
        for (const off of [0n, 3n, 6n]) {
          const r = rig(32);
          r.m.cpu.tss.sp[0] = r.sp0 - off;
          toUser(r, [0xcd, 0x80], r.L.ustack + 0x1235n);
          r.m.cpu.flags = FB;
          const f = from(r);
          runTo(r, 0x80);
          expectEvents(r, [{ vector: 0x80, kind: "software", savedIp: r.L.ucode + 2n, ip: r.L.ucode, cpl: 3, sp: f.sp }]);
          expectDelivered(r, { vector: 0x80, kind: "software", savedIp: r.L.ucode + 2n, f });
          expect(r.m.cpu.ss).toBe(SEL32.KERNEL_DS);
          expect(r.m.cpu.sp).toBe(r.sp0 - off - 20n);
        }
      });

      test("a bad SS0 in the TSS → #TS(SS0), which cannot be delivered either → #DF → shutdown", () => {
        const bad: [number, number][] = [[0, 0], [SEL32.KERNEL_CS, SEL32.KERNEL_CS], [SEL32.USER_DS, SEL32.USER_DS & ~3], [SEL32.KERNEL_DS | 3, SEL32.KERNEL_DS]];
        for (const [ss0, ec] of bad) {
          const r = rig(32);
          r.m.cpu.tss.ss[0] = ss0;
          toUser(r, [0xcd, 0x80]);
          r.m.cpu.flags = FB;
          const f = from(r);
          const res = r.m.run({ maxSteps: 20 });
          expect(res.reason).toBe("triple-fault");
          expectEvents(r, [
            { vector: 0x80, kind: "software", savedIp: r.L.ucode + 2n, ip: r.L.ucode, cpl: 3, sp: f.sp },
            { vector: 10, kind: "fault", errorCode: ec, savedIp: r.L.ucode, cpl: 3, sp: f.sp },
            { vector: 8, kind: "abort", errorCode: 0, savedIp: r.L.ucode, cpl: 3, sp: f.sp },
          ]);
          expect({ sp: r.m.cpu.sp, cs: r.m.cpu.cs, ss: r.m.cpu.ss }).toEqual({ sp: f.sp, cs: f.cs, ss: f.ss });
        }
      });

      test("a bad SS0 met while delivering an exception: #TS carries EXT", () => {
        const r = rig(32);
        r.m.cpu.tss.ss[0] = SEL32.KERNEL_CS;
        toUser(r, [0x0f, 0x0b]);
        r.m.cpu.flags = FB;
        const f = from(r);
        const res = r.m.run({ maxSteps: 20 });
        expect(res.reason).toBe("triple-fault");
        expectEvents(r, [
          { vector: 6, kind: "fault", savedIp: r.L.ucode, cpl: 3, sp: f.sp },
          { vector: 10, kind: "fault", errorCode: SEL32.KERNEL_CS | 1, savedIp: r.L.ucode, cpl: 3, sp: f.sp },
          { vector: 8, kind: "abort", errorCode: 0, savedIp: r.L.ucode, cpl: 3, sp: f.sp },
        ]);
      });
    }
  });

  describe(`${name} IRET checks`, () => {
    /** Writes an IRET frame at `at` (stack width words) and points SP at it; code = IRET at `code`. */
    const frameAt = (r: Rig, at: bigint, w: readonly bigint[]): void => {
      w.forEach((v, i) => (bits === 64 ? r.m.write64(at + BigInt(8 * i), v) : r.m.write32(at + BigInt(4 * i), Number(v))));
      r.m.cpu.sp = at;
    };
    const kframe = (r: Rig, w: readonly bigint[], flags = FB): void => {
      seedRegs(r);
      code(r, IRET(bits));
      frameAt(r, r.L.kstack + 0x1000n, w);
      r.m.cpu.flags = flags;
    };
    /** The IRET faults: exact event, frame, state; no register changed (RIP saved = the IRET). */
    const fails = (r: Rig, vector: number, errorCode: number): void => single(r, { vector, errorCode });

    const k = (r: Rig) => ({ cs: u(r.kcs), ss: u(r.kds), ucs: u(r.ucs), uds: u(r.uds) });
    const target = (r: Rig): bigint => r.L.kcode + 0x40n;

    test("popped CS null → #GP(0)", () => {
      for (const cs of [0n, 3n]) {
        const r = rig(bits);
        kframe(r, [target(r), cs, u(FB), r.L.kstack + 0x3000n, k(r).ss]);
        fails(r, 13, 0);
      }
    });

    test("popped CS naming a data segment → #GP(selector)", () => {
      const r = rig(bits);
      kframe(r, [target(r), k(r).ss, u(FB), r.L.kstack + 0x3000n, k(r).ss]);
      fails(r, 13, r.kds);
    });

    test("popped CS naming no descriptor (hole, LDT) → #GP(selector)", () => {
      for (const cs of [0x1230, 0x1234 | 3]) {
        const r = rig(bits);
        kframe(r, [target(r), u(cs), u(FB), r.L.kstack + 0x3000n, k(r).ss]);
        fails(r, 13, cs & 0xfffc);
      }
    });

    test("popped CS descriptor not present → #NP(selector)", () => {
      const r = rig(bits);
      r.m.cpu.gdt[0x80 >> 3] = { kind: "code", dpl: 0, present: false, long: bits === 64 };
      kframe(r, [target(r), 0x80n, u(FB), r.L.kstack + 0x3000n, k(r).ss]);
      fails(r, 11, 0x80);
    });

    test("return to CPL 3 with SS RPL != CS RPL → #GP(SS selector)", () => {
      const r = rig(bits);
      kframe(r, [r.L.ucode, k(r).ucs, u(FB), r.L.ustack + 0x100n, k(r).ss]);
      fails(r, 13, r.kds);
    });

    test("return to CPL 3 with a null SS → #GP(0)", () => {
      for (const ss of [0n, 3n]) {
        const r = rig(bits);
        kframe(r, [r.L.ucode, k(r).ucs, u(FB), r.L.ustack + 0x100n, ss]);
        fails(r, 13, 0);
      }
    });

    test("return to CPL 3 with SS naming a code segment → #GP(SS selector)", () => {
      const r = rig(bits);
      kframe(r, [r.L.ucode, k(r).ucs, u(FB), r.L.ustack + 0x100n, k(r).ucs]);
      fails(r, 13, r.ucs & ~3);
    });

    test("CS RPL < CPL (IRET at CPL 3 to a kernel CS) → #GP(selector), delivered on the kernel stack", () => {
      const r = rig(bits);
      seedRegs(r);
      toUser(r, IRET(bits));
      frameAt(r, r.L.ustack + 0x800n, [target(r), k(r).cs, u(FB), r.L.kstack + 0x3000n, k(r).ss]);
      r.m.cpu.flags = FB;
      fails(r, 13, r.kcs);
    });

    if (bits === 64) {
      test("non-canonical RIP in an IRETQ frame → #GP(0)", () => {
        for (const cs of [SEL64.KERNEL_CS, SEL64.USER_CS]) {
          const r = rig(64);
          const ss = cs === SEL64.KERNEL_CS ? SEL64.KERNEL_DS : SEL64.USER_DS;
          kframe(r, [NONCANON, u(cs), u(FB), r.L.kstack + 0x3000n, u(ss)]);
          fails(r, 13, 0);
        }
      });

      test("IRETQ with NT set → #GP(0)", () => {
        const r = rig(64);
        kframe(r, [target(r), k(r).cs, u(FB), r.L.kstack + 0x3000n, k(r).ss], FB | F.NT);
        fails(r, 13, 0);
        expect(r.m.cpu.flags & F.NT).toBe(0);
      });

      test("a null SS at CPL 0 is allowed in 64-bit mode", () => {
        const r = rig(64);
        kframe(r, [target(r), k(r).cs, u(0x2 | F.CF), r.L.kstack + 0x3008n, 0n]);
        const res = r.m.run({ maxSteps: 5, until: target(r) });
        expect(res.reason).toBe("until");
        expect(r.events).toEqual([]);
        expectState(r, { rip: target(r), sp: r.L.kstack + 0x3008n, cs: SEL64.KERNEL_CS, ss: 0, flags: 0x2 | F.CF });
      });
    } else {
      test("same-privilege IRET pops EIP, CS, EFLAGS only", () => {
        const r = rig(32);
        kframe(r, [target(r), k(r).cs, u(0x2 | F.CF | F.IF), 0xdeadbeefn, 0x1234n]);
        const res = r.m.run({ maxSteps: 5, until: target(r) });
        expect(res.reason).toBe("until");
        expectState(r, { rip: target(r), sp: r.L.kstack + 0x100cn, cs: SEL32.KERNEL_CS, ss: SEL32.KERNEL_DS, flags: 0x2 | F.CF | F.IF });
      });
    }

    test("IRET from CPL 0 to CPL 3 loads IF (and IOPL) from the image", () => {
      const r = rig(bits);
      const img = 0x2 | F.IF | F.IOPL | F.CF;
      kframe(r, [r.L.ucode + 0x10n, k(r).ucs, u(img), r.L.ustack + 0x100n, k(r).uds], 0x2);
      const res = r.m.run({ maxSteps: 5, until: r.L.ucode + 0x10n });
      expect(res.reason).toBe("until");
      expect(r.events).toEqual([]);
      expectState(r, { rip: r.L.ucode + 0x10n, sp: r.L.ustack + 0x100n, cs: r.ucs, ss: r.uds, flags: img });
      expect(r.m.cpu.cpl).toBe(3);
    });

    test("POPF at CPL 3 with IOPL 0 cannot change IF or IOPL (and does not fault)", () => {
      for (const [start, pushed] of [[FB, 0x2 | F.IOPL | F.CF], [0x2, 0x2 | F.IF | F.IOPL | F.CF]] as const) {
        const r = rig(bits);
        // push $pushed; popf
        toUser(r, [0x68, pushed & 0xff, (pushed >> 8) & 0xff, (pushed >> 16) & 0xff, 0, 0x9d]);
        r.m.cpu.flags = start;
        const res = r.m.run({ maxSteps: 5, until: r.L.ucode + 6n });
        expect(res.reason).toBe("until");
        expect(r.events).toEqual([]);
        expect(r.m.cpu.flags).toBe((start & (F.IF | F.IOPL)) | 0x2 | F.CF);
      }
    });

    test("POPF at CPL 0 can change IF and IOPL", () => {
      const r = rig(bits);
      code(r, [0x68, 0x03, 0x32, 0, 0, 0x9d]); // push $0x3203; popf
      r.m.cpu.flags = 0x2;
      expect(r.m.run({ maxSteps: 5, until: r.L.kcode + 6n }).reason).toBe("until");
      expect(r.m.cpu.flags).toBe(0x3203);
    });
  });

  describe(`${name} corrupted frames`, () => {
    const handler = (r: Rig): bigint => r.L.kcode + 0x800n;
    const setupUserInt3 = (r: Rig, body: number[]): void => {
      r.m.load(handler(r), [...body, ...IRET(bits)]);
      r.m.setGate(3, { handler: handler(r), dpl: 3 });
      toUser(r, [0xcc]);
      r.m.cpu.flags = FB;
    };

    test("garbage in the saved SS before IRET → #GP(selector), RIP saved = the IRET", () => {
      const r = rig(bits);
      // 64: movq $0x5a5a1230, 0x20(%rsp); 32: movl $0x5a5a1230, 0x10(%esp)
      const body = bits === 64 ? [0x48, 0xc7, 0x44, 0x24, 0x20, 0x30, 0x12, 0x5a, 0x5a] : [0xc7, 0x44, 0x24, 0x10, 0x30, 0x12, 0x5a, 0x5a];
      setupUserInt3(r, body);
      const f0 = from(r);
      runTo(r, 13);
      const iretAt = handler(r) + BigInt(body.length);
      const kframeAt = bits === 64 ? frame64(r.sp0, false) : r.sp0 - 20n;
      const inHandler: From = { cs: r.kcs, ss: bits === 64 ? 0 : r.kds, sp: kframeAt, flags: deliveredFlags(f0.flags) };
      expectEvents(r, [
        { vector: 3, kind: "software", savedIp: r.L.ucode + 1n, ip: r.L.ucode, cpl: 3, sp: f0.sp },
        { vector: 13, kind: "fault", errorCode: 0x1230, savedIp: iretAt, cpl: 0, sp: kframeAt },
      ]);
      expectDelivered(r, { vector: 13, kind: "fault", errorCode: 0x1230, savedIp: iretAt, f: inHandler });
      // The frame IRET refused is still there, with only SS changed.
      expect(words(r, kframeAt, 5)).toEqual([r.L.ucode + 1n, u(r.ucs), u(f0.flags), f0.sp, 0x5a5a1230n]);
    });

    test("a changed saved RIP resumes somewhere else", () => {
      const r = rig(bits);
      const elsewhere = r.L.ucode + 0x40n;
      // 64: movq $elsewhere, (%rsp); 32: movl $elsewhere, (%esp)
      const imm = Number(elsewhere & 0xffffffffn);
      const le = [imm & 0xff, (imm >>> 8) & 0xff, (imm >>> 16) & 0xff, (imm >>> 24) & 0xff];
      setupUserInt3(r, [...REX(bits), 0xc7, 0x04, 0x24, ...le]);
      const f0 = from(r);
      const res = r.m.run({ maxSteps: 10, until: elsewhere });
      expect(res.reason).toBe("until");
      expectState(r, { rip: elsewhere, sp: f0.sp, cs: r.ucs, ss: r.uds, flags: f0.flags });
    });
  });
}

function u(v: number): bigint { return BigInt(v); }
