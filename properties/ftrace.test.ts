import { describe, expect, test } from "vitest";
import fc from "fast-check";
import { emuCase } from "../src/arbitraries/emulation.js";
import { variantByName } from "../src/kernel/registry.js";
import { ftraceCallReplace, updateFtraceFunc } from "../src/kernel/ftrace-update.js";
import { type EmuCase, prepare, runEmuCase } from "../src/oracle/emulation.js";
import { Perm } from "../src/machine/page.js";

// ftrace's other int3 site: the call inside a trampoline being retargeted by
// update_ftrace_func (ftrace_update_func / ftrace_update_func_call, arch/x86/kernel/ftrace.c v5.2).
describe("ftrace trampoline call site", () => {
  for (const name of ["x86_64/v5.2", "x86_64/2019-05-04"]) {
    test(`${name}: a CPU trapping on the trampoline's call gets the new call emulated (≡ real)`, () => {
      const b = prepare(variantByName(name));
      fc.assert(fc.property(emuCase(b.k.L, ["call"]), (c) => {
        const r = runEmuCase(b, { ...c, trampoline: true });
        expect(r.equal).toBe(true);
      }), { numRuns: 200 });
    });
  }

  test("x86_64/mutant/ftrace-wrong-target is killed on trampoline sites too", () => {
    const b = prepare(variantByName("x86_64/mutant/ftrace-wrong-target"));
    const r = fc.check(fc.property(emuCase(b.k.L, ["call"]), (c) => runEmuCase(b, { ...c, trampoline: true }).equal), { numRuns: 100 });
    expect(r.failed).toBe(true);
  });

  test("update_ftrace_func: old call before, emulated new call inside the window, real new call after", () => {
    const b = prepare(variantByName("x86_64/v5.2"));
    const { k } = b;
    const m = k.m;
    const tramp = 0xffffffff90000000n, ip = tramp + 0x10n, oldT = 0xffffffff90100000n, newT = 0xffffffff90200000n;
    const stackTop = k.L.stack + 0x3000n;
    m.map(tramp, 0x1000, Perm.R | Perm.X).map(oldT, 0x1000, Perm.R | Perm.X).map(newT, 0x1000, Perm.R | Perm.X);
    m.load(ip, [...ftraceCallReplace(ip, oldT), 0xf4]);
    // each target records which one ran in rax, then returns
    m.load(oldT, [0xb8, 1, 0, 0, 0, 0xc3]);
    m.load(newT, [0xb8, 2, 0, 0, 0, 0xc3]);
    const go = (): bigint => {
      m.cpu.rip = ip; m.cpu.sp = stackTop; m.cpu.setReg(0, 0n);
      const r = m.run({ maxSteps: 300 });
      expect(r.reason).toBe("hlt");
      expect(m.cpu.rip).toBe(ip + 6n);      // back after the 5-byte call, past the hlt
      expect(m.cpu.sp).toBe(stackTop);
      return m.cpu.reg(0);
    };
    expect(go()).toBe(1n);
    const patch = updateFtraceFunc(k, ip, newT);
    expect(patch.next().value).toBe("break");
    expect(k.modifyingFtraceCode).toBe(1);
    expect(m.mem.readBytes(ip, 1)[0]).toBe(0xcc);
    expect(go()).toBe(2n);                   // int3 → is_ftrace_caller → call ftrace_update_func_call
    expect(patch.next().value).toBe("update");
    expect(go()).toBe(2n);                   // still the int3, new tail behind it
    expect(patch.next().value).toBe("finish");
    expect(go()).toBe(2n);                   // the real new call
    expect(patch.next().done).toBe(true);
    expect(k.modifyingFtraceCode).toBe(0);
    expect(Array.from(m.mem.readBytes(ip, 5))).toEqual(ftraceCallReplace(ip, newT));
  });

  test("after update_ftrace_func finished, an int3 left at the site is no longer ftrace's", () => {
    const b = prepare(variantByName("x86_64/v5.2"));
    const c: EmuCase = fc.sample(emuCase(b.k.L, ["call"]), { numRuns: 1, seed: 5 })[0];
    const r = runEmuCase(b, { ...c, trampoline: true });
    expect(r.equal).toBe(true);
    // with modifying_ftrace_code back at 0 the handler is not consulted: die("int3")
    b.k.m.restore(r.before);
    b.k.m.load(c.site, [0xcc]);
    b.k.ftraceUpdateFunc = c.site; b.k.modifyingFtraceCode = 0; b.k.events.length = 0;
    expect(b.k.m.run({ maxSteps: 300 }).reason).toBe("stopped");
    expect(b.k.events.at(-1)).toMatchObject({ kind: "die", what: "int3" });
  });
});
