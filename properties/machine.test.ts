import { describe, expect, test } from "vitest";
import fc from "fast-check";
import { F, Machine, Perm, saveCpu } from "../src/index.js";
import { regValue } from "../src/arbitraries/roundtrip.js";

const L = {
  64: { code: 0xffffffff81000000n, stack: 0xffffc90000000000n },
  32: { code: 0xc1000000n, stack: 0xc2000000n },
} as const;

function machine(bits: 32 | 64, code: number[]): Machine {
  const m = new Machine({ bits });
  m.map(L[bits].code, 0x2000, Perm.R | Perm.X).map(L[bits].stack, 0x4000);
  m.load(L[bits].code, code);
  m.cpu.rip = L[bits].code;
  m.cpu.sp = L[bits].stack + 0x2000n;
  return m;
}

const state = (bits: 32 | 64) => fc.record({
  regs: fc.array(regValue(bits), { minLength: 16, maxLength: 16 }),
  spOff: fc.integer({ min: 0x100, max: 0x3f00 }),
  flags: fc.integer({ min: 0, max: 0xfff }).map((f) => (f & (F.CF | F.PF | F.AF | F.ZF | F.SF | F.OF | F.DF)) | 2),
});

function setState(m: Machine, s: { regs: bigint[]; spOff: number; flags: number }, bits: 32 | 64): void {
  s.regs.forEach((v, i) => { if (i !== 4 && i < (bits === 64 ? 16 : 8)) m.cpu.setReg(i, v); });
  m.cpu.sp = L[bits].stack + BigInt(s.spOff);
  m.cpu.flags = s.flags;
}

describe("round trips", () => {
  for (const bits of [64, 32] as const) {
    test(`x86_${bits}: push/pop, call/ret, pushf/popf, push imm/pop mem restore the state`, () => {
      // push %rax; pop %rbx; pushf; popf; call f; push $-0x7b; pushq (%rsp); pop %rdx; pop %rsi; hlt; f: ret
      const code = [0x50, 0x5b, 0x9c, 0x9d, 0xe8, 0x08, 0, 0, 0, 0x6a, 0x85, 0xff, 0x34, 0x24, 0x5a, 0x5e, 0xf4, 0xc3];
      fc.assert(fc.property(state(bits), (s) => {
        const m = machine(bits, code);
        setState(m, s, bits);
        const before = saveCpu(m.cpu);
        const r = m.run({ maxSteps: 20 });
        expect(r.reason).toBe("hlt");
        const after = saveCpu(m.cpu);
        expect(m.cpu.reg(3)).toBe(m.cpu.reg(0));                    // pop got what push pushed
        expect(m.cpu.reg(2)).toBe(BigInt.asUintN(bits, -0x7bn));  // push $-0x7b; pushq (%rsp); pop %rdx
        expect(m.cpu.reg(6)).toBe(BigInt.asUintN(bits, -0x7bn));
        expect(after.flags).toBe(before.flags);                   // pushf/popf
        expect([after.lo[4], after.hi[4]]).toEqual([before.lo[4], before.hi[4]]); // balanced
        expect(m.cpu.rip).toBe(L[bits].code + 17n);
      }), { numRuns: 150 });
    });
  }
});

describe("host functions", () => {
  test("sysv64: arguments in rdi, rsi, rdx, rcx; result in rax; then ret", () => {
    const m = machine(64, [0xe8, 0xfb, 0x0f, 0, 0, 0xf4]); // call code+0x1000; hlt
    const seen: bigint[] = [];
    m.defineHost(L[64].code + 0x1000n, "f", (call) => { seen.push(call.arg(0), call.arg(1), call.arg(2), call.arg(3)); return 0xdeadbeefcafen; });
    [7, 6, 2, 1].forEach((r, i) => m.cpu.setReg(r, 0xffff000000000000n + BigInt(i)));
    expect(m.run().reason).toBe("hlt");
    expect(seen).toEqual([0xffff000000000000n, 0xffff000000000001n, 0xffff000000000002n, 0xffff000000000003n]);
    expect(m.cpu.reg(0)).toBe(0xdeadbeefcafen);
    expect(m.cpu.sp).toBe(L[64].stack + 0x2000n);
  });

  test("regparm3: eax, edx, ecx; cdecl: stack arguments", () => {
    const m = machine(32, [0x6a, 0x09, 0xe8, 0xf9, 0x0f, 0, 0, 0xe8, 0xf4, 0x1f, 0, 0, 0xf4]);
    let rp: bigint[] = [], cd: bigint[] = [];
    m.defineHost(L[32].code + 0x1000n, "rp", (c) => { rp = [c.arg(0), c.arg(1), c.arg(2)]; return 5; });
    m.map(L[32].code + 0x2000n, 0x1000, Perm.R | Perm.X);
    m.defineHost(L[32].code + 0x2000n, "cd", (c) => { cd = [c.arg(0)]; }, "cdecl");
    m.cpu.setReg(0, 1n); m.cpu.setReg(2, 2n); m.cpu.setReg(1, 3n);
    expect(m.run().reason).toBe("hlt");
    expect(rp).toEqual([1n, 2n, 3n]);
    expect(cd).toEqual([9n]);
    expect(m.cpu.reg(0)).toBe(5n); // the void cdecl function left eax alone
  });

  test("defining a host function on a non-executable page is a usage error", () => {
    const m = machine(64, []);
    expect(() => m.defineHost(L[64].stack, "x", () => 0)).toThrow(/not mapped executable/);
  });
});

describe("snapshots and diffs", () => {
  test("a snapshot is unaffected by later writes; restore brings everything back; diff names the bytes", () => {
    const m = machine(64, [0x48, 0x89, 0x03, 0xf4]); // mov %rax,(%rbx); hlt
    m.cpu.setReg(0, 0x1122334455667788n);
    m.cpu.setReg(3, L[64].stack + 0x100n);
    const s0 = m.snapshot();
    m.run();
    const s1 = m.snapshot();
    const d = Machine.diff(s0, s1);
    expect(d.registers.map((r) => r.name).sort()).toEqual(["rip"]);
    expect(d.memory).toEqual([{ addr: L[64].stack + 0x100n, a: new Uint8Array(8), b: Uint8Array.from([0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11]) }]);
    m.restore(s0);
    expect(m.read64(L[64].stack + 0x100n)).toBe(0n);
    expect(Machine.diff(s0, m.snapshot()).equal).toBe(true);
    m.restore(s1);
    expect(m.read64(L[64].stack + 0x100n)).toBe(0x1122334455667788n);
  });

  test("code patched after a snapshot executes the patch; after restore, the original again", () => {
    const m = machine(64, [0xb8, 1, 0, 0, 0, 0xf4]); // mov $1,%eax; hlt
    m.run();
    expect(m.cpu.reg(0)).toBe(1n);
    const s = m.snapshot();
    m.load(L[64].code + 1n, [2]);
    m.cpu.rip = L[64].code;
    m.run();
    expect(m.cpu.reg(0)).toBe(2n);
    m.restore(s);
    m.cpu.rip = L[64].code;
    m.run();
    expect(m.cpu.reg(0)).toBe(1n);
  });
});

describe("hooks", () => {
  test("onWrite sees every byte written, by instructions and by delivery", () => {
    const m = machine(64, [0x50, 0xcc, 0xf4]); // push %rax; int3 (no handler: shutdown)
    m.load(L[64].code + 0x800n, [0x48, 0xcf]);
    m.setGate(3, { handler: L[64].code + 0x800n });
    const writes: [bigint, number][] = [];
    m.onWrite((a, n) => writes.push([a, n]));
    m.run();
    const sp = L[64].stack + 0x2000n;
    expect(writes[0]).toEqual([sp - 8n, 8]);
    // the 64-bit frame: SS, RSP, RFLAGS, CS, RIP below RSP aligned down to 16 (RSP = sp-8
    // after the push, so 8 bytes of padding first)
    expect(writes.slice(1).map(([a, n]) => [sp - 8n - a, n])).toEqual([[16n, 8], [24n, 8], [32n, 8], [40n, 8], [48n, 8]]);
  });

  test("onInstruction can stop the run before an instruction", () => {
    const m = machine(64, [0x90, 0x90, 0x90, 0xf4]);
    m.onInstruction((_c, a) => (a === L[64].code + 2n ? "stop" : undefined));
    const r = m.run();
    expect(r).toMatchObject({ reason: "stopped", steps: 2 });
    expect(m.cpu.rip).toBe(L[64].code + 2n);
  });

  test("onException can stop before delivery, with the event", () => {
    const m = machine(32, [0x0f, 0x0b]);
    m.onException(() => "stop");
    const r = m.run();
    expect(r.reason).toBe("exception");
    expect(r.event).toMatchObject({ name: "#UD", vector: 6, kind: "fault", savedIp: L[32].code });
  });
});

describe("bad API input is a typed error", () => {
  test("usage errors", () => {
    expect(() => new Machine({ bits: 16 as unknown as 32 })).toThrow(/bits must be 32 or 64/);
    const m = machine(64, []);
    expect(() => m.setGate(256, { handler: 0n })).toThrow(/vector/);
    expect(() => m.run({ maxSteps: -1 })).toThrow(/maxSteps/);
    expect(() => m.load(0x1234n, [1])).toThrow(/not mapped/);
  });
});
