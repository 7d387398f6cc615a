import { expect, test } from "vitest";
import fc from "fast-check";
import { loadCpu, Machine, Perm, saveCpu } from "../src/index.js";

// Self-modifying code: random writes into code between steps (by the host and by the CPU
// itself, including across a page boundary) are always seen by the next fetch. The
// reference is a fresh machine, with no decode cache, loaded with the same bytes.
const CODE = 0xffffffff81000ff0n; // the code straddles a page boundary at ...1000
const DATA = 0xffffc90000000000n;

/** `mov $imm32,%eax` (5 bytes) or `add $imm8,%eax` (3 bytes) or `mov %eax,(%rbx)` (2 bytes). */
const insnBytes = fc.oneof(
  fc.integer().map((v) => [0xb8, v & 0xff, (v >> 8) & 0xff, (v >> 16) & 0xff, (v >>> 24) & 0xff]),
  fc.integer({ min: 0, max: 255 }).map((v) => [0x83, 0xc0, v]),
  fc.constant([0x89, 0x03]),
);

function fresh(bytes: Uint8Array, rip: bigint, rax: bigint, rbx: bigint, flags = 0x2): Machine {
  const m = new Machine({ bits: 64 });
  m.map(CODE & ~0xfffn, 0x2000, Perm.R | Perm.W | Perm.X).map(DATA, 0x1000);
  m.load(CODE, bytes);
  m.cpu.rip = rip; m.cpu.setReg(0, rax); m.cpu.setReg(3, rbx); m.cpu.flags = flags;
  return m;
}

test("the next fetch always sees the current bytes", () => {
  fc.assert(fc.property(
    fc.array(insnBytes, { minLength: 8, maxLength: 16 }),
    fc.array(fc.record({ at: fc.nat(), insn: insnBytes, cpuWrite: fc.boolean() }), { minLength: 1, maxLength: 30 }),
    (prog, edits) => {
      const bytes = new Uint8Array(prog.flat().concat([0xeb, 0xfe]));
      const m = fresh(bytes, CODE, 0n, DATA);
      for (const e of edits) {
        // Edit: the host rewrites an instruction's worth of bytes, or the CPU stores EAX into code.
        const at = CODE + BigInt(e.at % (bytes.length - 6));
        if (e.cpuWrite) {
          m.cpu.setReg(3, at); // next `mov %eax,(%rbx)` (if any) writes into code
        } else {
          m.mem.writeBytes(at, e.insn);
        }
        const now = m.mem.readBytes(CODE, bytes.length + 8);
        const ref = fresh(now, 0n, 0n, 0n);
        loadCpu(ref.cpu, saveCpu(m.cpu));
        const a = m.run({ maxSteps: 1 }), b = ref.run({ maxSteps: 1 });
        expect(a.reason).toBe(b.reason);
        expect(m.cpu.rip).toBe(ref.cpu.rip);
        expect(saveCpu(m.cpu)).toEqual(saveCpu(ref.cpu));
        expect(m.mem.readBytes(CODE, bytes.length)).toEqual(ref.mem.readBytes(CODE, bytes.length));
        if (m.cpu.rip < CODE || m.cpu.rip >= CODE + BigInt(bytes.length)) m.cpu.rip = CODE;
      }
    }), { numRuns: 200 });
});

test("a write into the second page of a page-crossing instruction invalidates it", () => {
  const m = new Machine({ bits: 64 });
  m.map(0x400000n, 0x2000, Perm.R | Perm.W | Perm.X);
  const at = 0x400ffen; // b8 at 0x400ffe, imm32 spans into the next page
  m.load(at, [0xb8, 0x11, 0x22, 0x33, 0x44, 0xeb, 0xf9]);
  m.cpu.rip = at;
  m.run({ maxSteps: 1 });
  expect(m.cpu.reg(0)).toBe(0x44332211n);
  m.mem.writeBytes(0x401001n, [0x99]);
  m.cpu.rip = at;
  m.run({ maxSteps: 1 });
  expect(m.cpu.reg(0)).toBe(0x44992211n);
});
