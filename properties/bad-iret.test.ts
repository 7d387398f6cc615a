import { afterEach, describe, expect, test, vi } from "vitest";
import fc from "fast-check";
import { Code, Decoder, DecoderOptions, Mnemonic } from "iced-x86";
import { Assembler } from "../src/asm/index.js";
import { badFrameCase, type BadFrameCase } from "../src/arbitraries/bad-frame.js";
import { mutantsCommand } from "../src/cli/mutants.js";
import { asmExtable, fixupException, searchExceptionTables } from "../src/kernel/extable.js";
import { PtRegs, SIZEOF_PT_REGS_64 } from "../src/kernel/pt-regs.js";
import { IRET_MUTANTS } from "../src/kernel/registry.js";
import { buildKernel32, VARIANTS_32 } from "../src/kernel/variants-32.js";
import { assembleInt3Entry32V52 } from "../src/kernel/entry-32.js";
import { installDoInt3 } from "../src/kernel/traps.js";
import { MUTANTS_64, VARIANTS_64 } from "../src/kernel/variants-64.js";
import { VARIANTS_FRED } from "../src/kernel/variants-fred.js";
import type { Variant } from "../src/kernel/variant.js";
import { checkVariant } from "../src/oracle/campaign.js";
import { checkBadIret, checkBadUserFrame, hasIretFixup, iretFixupKind } from "../src/oracle/bad-iret.js";
import { Perm } from "../src/machine/page.js";
import { type Bench, prepare } from "../src/oracle/emulation.js";
import { startCase } from "../src/oracle/engine.js";
import { emuCase } from "../src/arbitraries/emulation.js";

// Spec §7.15, 40ad2199580e "x86/entry/32: Fix IRET exception": the IRET that returns to user
// mode may fault on a frame a debugger or sigreturn made bad; the exception table sends that
// fault to iret_exc → do_iret_error → SIGILL for the task. Moving `.Lirq_return` off the IRET
// (3c88c692c287 as released) turns it into an oops.

afterEach(() => vi.restoreAllMocks());

const MUTANT = IRET_MUTANTS.find((m) => m.name === "x86_32/mutant/iret-extable-misses-iret") as Variant;
const json = (x: unknown): string => JSON.stringify(x, (_k, v: unknown) => (typeof v === "bigint" ? "0x" + v.toString(16) : v instanceof Uint8Array ? Array.from(v) : v));

/** A fixed user-int3 case (the machine state does not matter to the exit path). */
function oneCase(b: Bench): BadFrameCase["c"] {
  const [c] = fc.sample(emuCase(b.k.L, b.variant.emulates.length > 0 ? b.variant.emulates : ["call"]), { numRuns: 1, seed: 7 });
  return c;
}

/** 60 cases on v: no violation; a good frame returns, a bad cs or ss signals; all three outcomes seen. */
function goodAndBadFrames(b: ReturnType<typeof prepare>, v: Variant): void {
  const seen = new Set<string>();
  fc.assert(fc.property(badFrameCase(b.k.L, v.emulates), (bc) => {
    const r = checkBadUserFrame(b, bc);
    expect(r.violations).toEqual([]);
    expect(r.outcome).toBe(bc.bad.field === "none" ? "returned" : "signalled");
    seen.add(`${bc.bad.field}:${r.outcome}`);
  }), { numRuns: 60 });
  expect([...seen].sort()).toEqual(["cs:signalled", "none:returned", "ss:signalled"]);
}

describe("bad user frame → signal, never an oops", () => {
  for (const v of VARIANTS_32) {
    test(`${v.name}: a good frame returns to user mode; a bad cs/ss ends in SIGILL(iret exception)`, () => {
      const b = prepare(v);
      expect(hasIretFixup(b)).toBe(true);
      goodAndBadFrames(b, v);
    });
  }

  test("each i386 stub labels its IRET `.Lirq_return`, and the exception table sends it to iret_exc", () => {
    for (const v of VARIANTS_32) {
      const { k } = prepare(v);
      const at = k.addr(".Lirq_return");
      expect(k.m.read32(at) & 0xff, v.name).toBe(0xcf); // iretd
      expect(searchExceptionTables(k, at)?.fixup, v.name).toBe(k.addr("iret_exc"));
    }
    const { k } = prepare(MUTANT);
    expect(k.m.read32(k.addr(".Lirq_return")) & 0xff).not.toBe(0xcf); // the IRET_FRAME test, as 3c88c692c287 had it
  });

  test("x86_32/v5.3: the user's bad cs and bad ss reach do_iret_error in pt_regs built over the faulting frame", () => {
    const b = prepare(VARIANTS_32.find((v) => v.name === "x86_32/v5.3") as Variant);
    const c = oneCase(b);
    for (const bad of [{ field: "cs", selector: 0x63 }, { field: "ss", selector: 0x73 }, { field: "ss", selector: 0x3 }, { field: "cs", selector: 0xfffb }] as const) {
      const r = checkBadUserFrame(b, { c, bad });
      expect(r.violations).toEqual([]);
      expect(r.gpAt).toBe(b.k.addr(".Lirq_return"));
      const sig = r.events[1];
      expect(sig).toMatchObject({ kind: "signal", signal: "SIGILL", what: "iret exception", [bad.field]: bad.selector });
    }
  });

  test("a user's i386 stub that names no `.Lirq_return` still boots: no exception table, #GP oopses as before", () => {
    const k = buildKernel32((kk, at, h) => {
      const end = assembleInt3Entry32V52(kk, at, { handler: h });
      kk.sym.delete("restore_all");
      kk.sym.delete(".Lirq_return");
      return end;
    }, (kk) => installDoInt3(kk, {}));
    expect(k.extable).toEqual([]);
    expect(k.sym.has("iret_exc")).toBe(false);
    expect(k.m.cpu.idt[13]?.handler).toBe(k.addr("exc_13"));
  });

  test("the property applies to the i386 and x86-64 IDT models, not to FRED (ERETU's fix-up is not modeled)", () => {
    for (const v of [...VARIANTS_32, ...VARIANTS_64]) expect(iretFixupKind(prepare(v)), v.name).toBe(v.bits === 32 ? "extable" : "error_entry");
    for (const v of VARIANTS_FRED.filter((x) => x.emulates.length > 0).slice(0, 3)) {
      expect(checkBadIret(v, { runs: 1 }), v.name).toBeUndefined();
    }
  });
});

// x86-64 (entry_64.S / traps.c v5.3): no exception-table entry covers the exit's IRETQ; a #GP it
// raises arrives in general_protection with a kernel frame, error_entry recognises its RIP as
// native_irq_return_iret, and fixup_bad_iret rebuilds pt_regs from the IRET's target, so
// do_general_protection sees a user-mode fault: SIGSEGV, never an oops.
describe("x86-64: a bad user frame → fixup_bad_iret → SIGSEGV, never an oops", () => {
  for (const v of VARIANTS_64) {
    test(`${v.name}: a good frame returns to user mode; a bad cs/ss ends in SIGSEGV(general protection fault) with the user's frame`, () => {
      const b = prepare(v);
      goodAndBadFrames(b, v);
    });
  }

  test("each x86-64 stub's IRETQ is native_irq_return_iret, the one exit for user and kernel mode; #GP goes to general_protection; no exception table", () => {
    for (const v of [...VARIANTS_64, ...MUTANTS_64]) {
      const { k } = prepare(v);
      const at = k.addr("native_irq_return_iret");
      expect(k.m.read32(at) & 0xffff, v.name).toBe(0xcf48); // rex.w iret
      expect(k.extable, v.name).toEqual([]);
      expect(k.m.cpu.idt[13]?.handler, v.name).toBe(k.addr("general_protection"));
    }
    // the Xen PV mutant's second int3 entry exits through the same IRETQ
    const { k } = prepare(MUTANTS_64.find((m) => m.name === "x86_64/mutant/xen-pv-int3-without-gap") as Variant);
    const d = new Decoder(64, k.m.mem.readBytes(k.addr("xen_asm_int3"), 0x80), DecoderOptions.None);
    d.ip = k.addr("xen_asm_int3");
    const jumps: bigint[] = [];
    for (const ins of d.decodeAll()) {
      if (ins.mnemonic === Mnemonic.Jmp) jumps.push(ins.nearBranchTarget);
      ins.free();
    }
    d.free();
    expect(jumps[0]).toBe(k.addr("native_irq_return_iret"));
  });

  test("x86_64/v5.6: the bad selectors reach do_general_protection as a user-mode fault, in pt_regs at the task stack's top", () => {
    const b = prepare(VARIANTS_64.find((v) => v.name === "x86_64/v5.6") as Variant);
    const c = oneCase(b);
    const calls: string[] = [];
    const unhook = b.k.m.onInstruction((_cpu, addr) => {
      for (const n of ["error_entry", ".Lerror_kernelspace", ".Lerror_bad_iret", "fixup_bad_iret", "sync_regs", "do_general_protection"]) if (addr === b.k.addr(n)) calls.push(n);
    });
    try {
      for (const bad of [{ field: "cs", selector: 0x13 }, { field: "cs", selector: 0x2b }, { field: "ss", selector: 0x1b }, { field: "ss", selector: 0x3 }, { field: "cs", selector: 0x37 }] as const) {
        calls.length = 0;
        const r = checkBadUserFrame(b, { c, bad });
        expect(r.violations).toEqual([]);
        expect(r.gpAt).toBe(b.k.addr("native_irq_return_iret"));
        expect(r.events[1]).toMatchObject({ kind: "signal", signal: "SIGSEGV", what: "general protection fault", ip: b.k.L.userText + BigInt(c.spOffset & 0xfff) + 1n, [bad.field]: bad.selector });
        expect(calls).toEqual(["error_entry", ".Lerror_kernelspace", ".Lerror_bad_iret", "fixup_bad_iret", "sync_regs", "do_general_protection"]);
      }
    } finally {
      unhook();
    }
  });

  test("the property checks the whole pt_regs the fault got: a register changed on the way is a violation", () => {
    const b = prepare(VARIANTS_64.find((v) => v.name === "x86_64/v5.6") as Variant);
    const c = oneCase(b);
    const unhook = b.k.m.onInstruction((cpu, addr) => {
      if (addr === b.k.addr("do_general_protection")) new PtRegs(b.k.m, cpu.reg(7)).set("r12", 0xbadn); // rdi = regs
    });
    try {
      const r = checkBadUserFrame(b, { c, bad: { field: "ss", selector: 0x1b } });
      expect(r.outcome).toBe("signalled");
      expect(r.violations).toEqual([expect.stringMatching(/are not the user's frame: pt_regs->r12 0xbad, not the user's 0x/)]);
    } finally {
      unhook();
    }
  });

  /** Kernel code on the task stack that IRETQs to `frame` (cs, ss), not at native_irq_return_iret; returns the IRETQ's address. */
  function iretqInKernel(b: Bench, cs: number, ss: number): bigint {
    const { k } = b;
    startCase(b);
    const at = k.L.siteText + 0x800n;
    const a = new Assembler(64);
    a.ins(Code.Pushq_imm32, ss).ins(Code.Pushq_imm32, 0x1000).ins(Code.Pushq_imm32, 0x202).ins(Code.Pushq_imm32, cs).ins(Code.Pushq_imm32, 0x1000);
    const iret = a.label("iret");
    a.bind(iret).ins(Code.Iretq).ins(Code.Hlt);
    const out = a.assemble(at);
    k.m.load(at, out.bytes);
    const cpu = k.m.cpu;
    cpu.setCs(k.L.kernelCs);
    cpu.ss = k.L.kernelSs;
    cpu.sp = k.L.stack + 0x1800n;
    cpu.rip = at;
    cpu.flags = 0x2;
    return out.addressOf(iret);
  }

  test("a kernel-mode #GP anywhere else oopses: die(general protection fault) at the faulting IRETQ, no fixup_bad_iret", () => {
    const b = prepare(VARIANTS_64.find((v) => v.name === "x86_64/v6.2") as Variant);
    const iret = iretqInKernel(b, 0x13, b.k.L.userSs); // a user frame with a bad CS, but not the exit's IRETQ
    let fixups = 0;
    const unhook = b.k.m.onInstruction((_c, addr) => { if (addr === b.k.addr("fixup_bad_iret")) fixups++; });
    const r = b.k.m.run({ maxSteps: 300 });
    unhook();
    expect(r.reason).toBe("stopped");
    expect(b.k.events).toEqual([{ kind: "die", what: "general protection fault", ip: iret }]);
    expect(fixups).toBe(0);
  });

  test("a user-mode #GP (HLT at CPL 3) gives SIGSEGV through error_entry's user path (sync_regs), with the user's frame", () => {
    const b = prepare(VARIANTS_64.find((v) => v.name === "x86_64/v5.10") as Variant);
    const { k } = b;
    startCase(b);
    const m = k.m, L = k.L, cpu = m.cpu;
    m.map(L.userText, 0x1000, Perm.R | Perm.X | Perm.U).map(L.userStack, 0x2000, Perm.R | Perm.W | Perm.U);
    m.load(L.userText + 0x10n, [0xf4]);
    cpu.setCs(L.userCs);
    cpu.ss = L.userSs;
    cpu.sp = L.userStack + 0x1008n;
    cpu.rip = L.userText + 0x10n;
    cpu.flags = 0x202;
    const r = m.run({ maxSteps: 300 });
    expect(r.reason).toBe("stopped");
    expect(k.events).toEqual([{ kind: "signal", signal: "SIGSEGV", what: "general protection fault", ip: L.userText + 0x10n, cs: L.userCs, ss: L.userSs }]);
    const regs = new PtRegs(m, L.stack + BigInt(L.threadSize) - BigInt(SIZEOF_PT_REGS_64));
    expect([regs.ip, regs.sp, regs.get("orig_ax")]).toEqual([L.userText + 0x10n, L.userStack + 0x1008n, (1n << 64n) - 1n]);
  });

  test("fixup_bad_iret refuses a kernel frame (BUG_ON(!user_mode)): a faulting kernel-mode return at native_irq_return_iret oopses", () => {
    const b = prepare(VARIANTS_64.find((v) => v.name === "x86_64/v5.6") as Variant);
    const { k } = b;
    startCase(b);
    const cpu = k.m.cpu;
    // the exit's IRETQ, entered with a kernel frame whose SS is bad
    const sp = k.L.stack + 0x1800n;
    for (const [i, w] of [0xffffffff81200000n, BigInt(k.L.kernelCs), 0x2n, sp + 0x100n, 0x3n].entries()) k.m.write64(sp + BigInt(8 * i), w);
    cpu.setCs(k.L.kernelCs);
    cpu.ss = k.L.kernelSs;
    cpu.sp = sp;
    cpu.rip = k.addr("native_irq_return_iret");
    cpu.flags = 0x2;
    const r = k.m.run({ maxSteps: 300 });
    expect(r.reason).toBe("stopped");
    expect(k.events).toEqual([{ kind: "die", what: "fixup_bad_iret: not a user frame", ip: 0xffffffff81200000n }]);
  });
});

describe("x86_64/mutant/bad-iret-rip-unrecognised", () => {
  const MUTANT64 = IRET_MUTANTS.find((m) => m.name === "x86_64/mutant/bad-iret-rip-unrecognised") as Variant;

  test("is killed by the bad-user-frame property: the faulting IRETQ is taken for a kernel #GP and oopses", () => {
    const r = checkBadIret(MUTANT64, { runs: 100 });
    expect(r?.ok).toBe(false);
    expect(r?.detail).toMatch(/^oops: die\(general protection fault\) at 0x[0-9a-f]+ \(#GP at 0x[0-9a-f]+/);
    expect(r?.counterexample?.bad.field).not.toBe("none");
    const b = prepare(MUTANT64);
    expect(r?.detail).toContain(`die(general protection fault) at 0x${b.k.addr("native_irq_return_iret").toString(16)}`);
    console.log(json({ mutant: MUTANT64.name, runsToKill: r?.runs, shrinks: r?.shrinks, counterexample: r?.counterexample?.bad, detail: r?.detail }));
  });

  test("survives the campaign's properties (why it is not in ALL_MUTANTS): a kernel-mode int3's IRETQ never faults", () => {
    const reports = checkVariant(MUTANT64, { runs: 120 });
    expect(reports.map((p) => [p.property, p.ok && p.missing.length === 0 ? "held" : "failed"])).toEqual([["emulated ≡ real", "held"], ["handler invariants", "held"]]);
  });

  test("`int3bed mutants` lists it in the exit-path section, killed", () => {
    const log = vi.spyOn(console, "log").mockImplementation(() => undefined);
    const code = mutantsCommand(["--variant", MUTANT64.name, "--json"]);
    expect(code).toBe(0);
    const doc = JSON.parse(log.mock.calls.map((c) => c.map(String).join(" ")).join("\n")) as { ok: boolean; iret: { ok: boolean; results: { mutant: string; killed: boolean; runs: number }[] } };
    expect(doc.ok).toBe(true);
    expect(doc.iret.results).toMatchObject([{ mutant: MUTANT64.name, killed: true }]);
  });
});

describe("the exception table and the #GP handler", () => {
  test("search_exception_tables matches exact addresses only; fixup_exception rewrites regs->ip", () => {
    const b = prepare(VARIANTS_32[0]);
    const k = b.k;
    asmExtable(k, 0xc1000800n, 0xc1000900n);
    asmExtable(k, 0xc1000010n, 0xc1000020n);
    expect(k.extable.map((e) => e.insn)).toEqual([...k.extable.map((e) => e.insn)].sort((x, y) => (x < y ? -1 : 1)));
    expect(searchExceptionTables(k, 0xc1000800n)?.fixup).toBe(0xc1000900n);
    expect(searchExceptionTables(k, 0xc1000801n)).toBeUndefined();
    const regs = new PtRegs(k.m, k.L.stack + 0x100n);
    regs.ip = 0xc1000010n;
    expect(fixupException(k, regs, 13)).toBe(true);
    expect(regs.ip).toBe(0xc1000020n);
    regs.ip = 0xc1000011n;
    expect(fixupException(k, regs, 13)).toBe(false);
    expect(regs.ip).toBe(0xc1000011n);
  });

  /** Kernel code that IRETs to a user frame with a bad CS (0x63 = __KERNEL_CS|3), then a fix-up that HLTs. */
  function badIretInKernel(b: Bench, covered: boolean): { iret: bigint; fixup: bigint } {
    const { k } = b;
    startCase(b);
    const at = k.L.siteText + 0x800n;
    const a = new Assembler(32);
    a.ins(Code.Pushd_imm32, k.L.userSs).ins(Code.Pushd_imm32, 0x1000).ins(Code.Pushd_imm32, 0x202).ins(Code.Pushd_imm32, 0x63).ins(Code.Pushd_imm32, 0x1000);
    const iret = a.label("iret"), fixup = a.label("fixup");
    a.bind(iret).ins(Code.Iretd).bind(fixup).ins(Code.Hlt);
    const out = a.assemble(at);
    k.m.load(at, out.bytes);
    const r = { iret: out.addressOf(iret), fixup: out.addressOf(fixup) };
    if (covered) asmExtable(k, r.iret, r.fixup);
    const cpu = k.m.cpu;
    cpu.setCs(k.L.kernelCs);
    cpu.ss = k.L.kernelSs;
    cpu.sp = k.L.stack + 0x1800n;
    cpu.rip = at;
    cpu.flags = 0x2;
    return r;
  }

  test("a kernel-mode #GP the table does not cover oopses: die(general protection fault) at the faulting IRET", () => {
    const b = prepare(VARIANTS_32.find((v) => v.name === "x86_32/v6.2") as Variant);
    const { iret } = badIretInKernel(b, false);
    const r = b.k.m.run({ maxSteps: 200 });
    expect(r.reason).toBe("stopped");
    expect(b.k.events).toEqual([{ kind: "die", what: "general protection fault", ip: iret }]);
  });

  test("the same #GP, covered, resumes at the fix-up with the faulting instruction's stack", () => {
    const b = prepare(VARIANTS_32.find((v) => v.name === "x86_32/v6.2") as Variant);
    const { fixup } = badIretInKernel(b, true);
    const k = b.k;
    const r = k.m.run({ maxSteps: 200, until: fixup });
    expect(r.reason).toBe("until");
    expect(k.events).toEqual([]);
    expect(k.m.cpu.sp).toBe(k.L.stack + 0x1800n - 20n); // the five words the IRET would have popped
    expect(k.m.cpu.cpl).toBe(0);
  });
});

describe("x86_32/mutant/iret-extable-misses-iret", () => {
  test("is killed by the bad-user-frame property: the faulting IRET oopses", () => {
    const r = checkBadIret(MUTANT, { runs: 100 });
    expect(r?.ok).toBe(false);
    expect(r?.detail).toMatch(/^oops: die\(general protection fault\) at 0x[0-9a-f]+ \(#GP at 0x[0-9a-f]+; the exception table covers 0x[0-9a-f]+(, 0x[0-9a-f]+)*\)/);
    expect(r?.counterexample?.bad.field).not.toBe("none");
    console.log(json({ mutant: MUTANT.name, runsToKill: r?.runs, shrinks: r?.shrinks, counterexample: r?.counterexample?.bad, detail: r?.detail }));
  });

  test("survives the campaign's properties (why it is not in ALL_MUTANTS): a kernel-mode int3's IRET never faults", () => {
    const reports = checkVariant(MUTANT, { runs: 120 });
    expect(reports.map((p) => [p.property, p.ok && p.missing.length === 0 ? "held" : "failed"])).toEqual([["emulated ≡ real", "held"], ["handler invariants", "held"]]);
  });

  test("`int3bed mutants` lists it in the exit-path section, killed", () => {
    const log = vi.spyOn(console, "log").mockImplementation(() => undefined);
    const code = mutantsCommand(["--variant", MUTANT.name, "--json"]);
    expect(code).toBe(0);
    const doc = JSON.parse(log.mock.calls.map((c) => c.map(String).join(" ")).join("\n")) as { ok: boolean; results: unknown[]; iret: { ok: boolean; results: { mutant: string; killed: boolean; runs: number }[] } };
    expect(doc.ok).toBe(true);
    expect(doc.results).toEqual([]);
    expect(doc.iret.results).toMatchObject([{ mutant: MUTANT.name, killed: true }]);
  });
});
