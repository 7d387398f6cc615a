import { afterEach, describe, expect, test, vi } from "vitest";
import fc from "fast-check";
import { Decoder, DecoderOptions, Mnemonic, OpKind, Register } from "iced-x86";
import { type UserSegmentsCase, userSegmentsCase } from "../src/arbitraries/user-segments.js";
import { mutantsCommand } from "../src/cli/mutants.js";
import { GDT_ENTRY_32, gdtAddress } from "../src/kernel/gdt-32.js";
import { IRET_MUTANTS } from "../src/kernel/registry.js";
import { VARIANTS_32 } from "../src/kernel/variants-32.js";
import { VARIANTS_64 } from "../src/kernel/variants-64.js";
import type { Variant } from "../src/kernel/variant.js";
import { checkBadIret } from "../src/oracle/bad-iret.js";
import { checkVariant } from "../src/oracle/campaign.js";
import { prepare } from "../src/oracle/emulation.js";
import { checkEspfix, checkUserSegments, describeUserSegmentsCase, hasEspfixExit } from "../src/oracle/espfix.js";
import { SEG, SEL32 } from "../src/machine/index.js";

// Spec §7.15, 4c4fd55d3d59 "x86/entry/32: Use %ss segment where required": IRET_FRAME runs
// "with %ds, %es, %fs, and %gs from the interrupted frame" and maybe "in ESPFIX mode ... with
// a nonzero SS base and an offset ESP", so its stores below regs->sp name %ss. What reaches it
// in the kernel's code: a fault the exit path takes after RESTORE_REGS has loaded a task's
// DS — a rejected ES/FS pop, or an IRET to a bad frame — possibly on the ESPFIX stack (the
// task's SS is in its LDT); the fault's entry unwinds ESPFIX (a1a338e5b6fe) and its return
// rebuilds the frame through regs->sp with the task's DS loaded.

afterEach(() => vi.restoreAllMocks());

const byName = (n: string): Variant => [...VARIANTS_32, ...IRET_MUTANTS].find((v) => v.name === n) as Variant;
const V53 = byName("x86_32/v5.3");
const DS_MUTANT = byName("x86_32/mutant/iret-frame-ds-not-ss");
const LATE_MUTANT = byName("x86_32/mutant/espfix-unwound-after-fixup-frame");
const json = (x: unknown): string => JSON.stringify(x, (_k, v: unknown) => (typeof v === "bigint" ? "0x" + v.toString(16) : v));

/** A case built by hand: all registers 0x11…, flat defaults, then `o`. */
function uc(o: Partial<UserSegmentsCase>): UserSegmentsCase {
  return {
    regs: [0x11111111, 0x22222222, 0x33333333, 0x44444444, 0, 0x66666666, 0x77777777, 0x88888888], flags: 0x8d5, stack: "ldt", esp: 0x1234_5678,
    ds: { kind: "user" }, es: { kind: "user" }, fs: { kind: "user" }, gs: { kind: "null" }, change: { field: "none", selector: 0 }, stackBytes: [0xa5, 0x5a, 0x3c],
    ...o,
  };
}

describe("user segments + ESPFIX → exact return, over every i386 model with IRET_FRAME", () => {
  const models = VARIANTS_32.filter((v) => hasEspfixExit(prepare(v)));

  test("the models with the v5.3 exit are exactly v5.3 and later; the older designs and x86-64 are out of scope", () => {
    expect(models.map((v) => v.name)).toEqual(["x86_32/v5.3", "x86_32/v5.6", "x86_32/v5.10", "x86_32/v6.2"]);
    for (const v of [...VARIANTS_32.filter((x) => !models.includes(x)), VARIANTS_64[0]]) expect(checkEspfix(v, { runs: 1 }), v.name).toBeUndefined();
  });

  /** The addresses of IRET_FRAME's four stores (`mov %ecx, %ss:-N(%eax)`) in both RESTORE_REGS. */
  function iretFrameStores(v: Variant): Set<bigint> {
    const { k } = prepare(v);
    const at = k.addr("int3");
    const d = new Decoder(32, k.m.mem.readBytes(at, Number(k.addr("ftrace_regs_caller") - at)), DecoderOptions.None);
    d.ip = at;
    const out = new Set<bigint>();
    for (const i of d.decodeAll()) {
      if (i.mnemonic === Mnemonic.Mov && i.op0Kind === OpKind.Memory && i.memoryBase === Register.EAX && i.op1Register === Register.ECX) out.add(i.ip);
      i.free();
    }
    d.free();
    return out;
  }

  for (const v of models) {
    test(`${v.name}: every case returns exactly or ends in SIGILL; the cases cover ESPFIX, nested faults on it, and IRET_FRAME with a task's DS — never with a nonzero SS base`, () => {
      const b = prepare(v);
      const stores = iretFrameStores(v);
      const seen = new Set<string>();
      fc.assert(fc.property(userSegmentsCase(), (c) => {
        const r = checkUserSegments(b, c, (cpu, addr) => {
          if (!stores.has(addr)) return;
          seen.add(cpu.ssBase !== 0 ? "IRET_FRAME rebuilding on a nonzero SS base" : "IRET_FRAME rebuilding");
        });
        expect(r.violations).toEqual([]);
        expect(r.outcome).toBe(c.change.field === "cs" || c.change.field === "ss" ? "signalled" : "returned");
        seen.add(`${r.outcome}${r.espfix ? " via ESPFIX" : ""}`);
        for (const n of r.nested) {
          if (n.ssBase !== 0) seen.add("a nested #GP taken on the ESPFIX stack");
          if (c.ds.kind !== "user" && (c.change.field === "es" || c.change.field === "fs" || c.change.field === "cs" || c.change.field === "ss")) seen.add(`a nested #GP returning with the task's ${c.ds.kind} DS`);
        }
      }), { numRuns: 120 });
      expect([...seen].sort()).toEqual(expect.arrayContaining([
        "a nested #GP returning with the task's ldt DS", "a nested #GP returning with the task's null DS", "a nested #GP returning with the task's tls DS",
        "a nested #GP taken on the ESPFIX stack", "returned", "returned via ESPFIX", "signalled", "signalled via ESPFIX", "IRET_FRAME rebuilding",
      ]));
      // the exception entry unwinds ESPFIX before FIXUP_FRAME (a1a338e5b6fe): the rebuild always runs on the flat stack
      expect(seen.has("IRET_FRAME rebuilding on a nonzero SS base")).toBe(false);
    });
  }
});

describe("x86_32/v5.3: the paths, instruction by instruction", () => {
  test("a return to an LDT stack switches to __ESPFIX_SS: base = kernel ESP's high word − the task's, written into this CPU's GDT; the task gets all 32 bits of its ESP", () => {
    const b = prepare(V53);
    const { k } = b;
    let at: { ss: number; base: number; esp: number; lin: number } | undefined;
    const r = checkUserSegments(b, uc({ esp: 0x1234_5678 }), (c) => {
      if (at === undefined && c.ss === SEL32.ESPFIX_SS) at = { ss: c.ss, base: c.segBase[SEG.SS] >>> 0, esp: c.lo[4] >>> 0, lin: (c.segBase[SEG.SS] + c.lo[4]) >>> 0 };
    });
    expect(r.violations).toEqual([]);
    expect(r.espfix).toBe(true);
    const kernelTop = Number(k.L.stack) + k.L.threadSize;
    expect(at?.esp !== undefined && (at.esp >>> 16)).toBe(0x1234);         // ESP carries the task's high word …
    expect(at?.lin !== undefined && at.lin < kernelTop && at.lin >= Number(k.L.stack)).toBe(true); // … over the same linear kernel stack
    expect(at?.base).toBe(((kernelTop - 1) & 0xffff0000) - 0x1234_0000 >>> 0);
    const mem = k.m.mem;
    mem.user = false; mem.flush(); // read as the kernel: the CPU is back at CPL 3
    const d = mem.readBytes(gdtAddress(0) + BigInt(8 * GDT_ENTRY_32.ESPFIX_SS), 8);
    expect((d[4] | (d[7] << 8)) << 16 >>> 0).toBe(at?.base);
    expect(k.m.cpu.sp).toBe(0x1234_5678n);
  });

  test("a task ES the CPU rejects faults in RESTORE_REGS on the ESPFIX stack; the fault's return runs IRET_FRAME with the task's null DS, storing through %ss at regs->sp − 16 … − 4", () => {
    const b = prepare(V53);
    const { k } = b;
    const popEs = k.extable.map((e) => e.insn).filter((a) => k.m.mem.readBytes(a, 1)[0] === 0x07); // popl %es
    const stores: { lin: number; ds: number; ss: number }[] = [];
    let regsSp = 0;
    const r = checkUserSegments(b, uc({ ds: { kind: "null" }, change: { field: "es", selector: SEL32.KERNEL_CS | 3 } }), (c, addr, insn) => {
      const d = new Decoder(32, insn.bytes, DecoderOptions.None);
      d.ip = addr;
      const i = d.decode();
      // IRET_FRAME's stores: mov %ecx, %ss:-N(%eax)
      if (i.mnemonic === Mnemonic.Mov && i.op0Kind === OpKind.Memory && i.memoryBase === Register.EAX && i.op1Register === Register.ECX && c.cpl === 0) {
        stores.push({ lin: (c.segBase[SEG.SS] + c.lo[0] + Number(BigInt.asIntN(32, i.memoryDisplacement))) >>> 0, ds: c.ds, ss: c.ss });
        regsSp = c.lo[0] >>> 0;
      }
      i.free(); d.free();
    });
    expect(r.violations).toEqual([]);
    expect(r.nested).toHaveLength(1);
    expect(popEs).toContain(r.nested[0].at);
    expect(r.nested[0].ss).toBe(SEL32.ESPFIX_SS);              // taken on the ESPFIX stack …
    expect(r.nested[0].ssBase).not.toBe(0);
    expect(stores.map((s) => [s.ds, s.ss])).toEqual(Array(4).fill([0, SEL32.KERNEL_DS])); // … rebuilt with the task's null DS, through the flat SS
    expect(stores.map((s) => s.lin - regsSp)).toEqual([-4, -8, -12, -16]);
    expect(k.m.cpu.es).toBe(0);                                 // the fix-up's null ES
    expect(k.m.cpu.ds).toBe(0);
  });

  test("the IRET_FRAME stores carry the SS prefix in every v5.3+ model and no segment prefix in the mutant", () => {
    const prefixes = (v: Variant): number[] => {
      const { k } = prepare(v);
      const at = k.addr("int3");
      const d = new Decoder(32, k.m.mem.readBytes(at, Number(k.addr("ftrace_regs_caller") - at)), DecoderOptions.None);
      d.ip = at;
      const out: number[] = [];
      for (const i of d.decodeAll()) {
        if (i.mnemonic === Mnemonic.Mov && i.op0Kind === OpKind.Memory && i.memoryBase === Register.EAX && i.op1Register === Register.ECX) out.push(i.segmentPrefix);
        i.free();
      }
      d.free();
      return out;
    };
    for (const v of VARIANTS_32.slice(2)) expect(prefixes(v), v.name).toEqual(Array(8).fill(Register.SS)); // two RESTORE_REGS
    expect(prefixes(DS_MUTANT)).toEqual(Array(8).fill(Register.None));
  });
});

describe("x86_32/mutant/iret-frame-ds-not-ss (before 4c4fd55d3d59)", () => {
  test("is killed by the property with a shrunk counterexample", () => {
    const r = checkEspfix(DS_MUTANT);
    expect(r?.ok).toBe(false);
    expect(r?.counterexample).toBeDefined();
    const ce = r?.counterexample as UserSegmentsCase;
    expect(ce.ds.kind).not.toBe("user");                      // the kill needs the task's DS to differ from the flat one
    expect(["cs", "ss", "es", "fs"]).toContain(ce.change.field);
    console.log(json({ mutant: DS_MUTANT.name, runsToKill: r?.runs, shrinks: r?.shrinks, found: describeUserSegmentsCase(ce), detail: r?.detail }));
  });

  test("a null task DS: IRET_FRAME's first store faults — a kernel #GP no exception-table entry covers — and the kernel oopses", () => {
    const r = checkUserSegments(prepare(DS_MUTANT), uc({ ds: { kind: "null" }, change: { field: "es", selector: SEL32.KERNEL_CS | 3 } }));
    expect(r.outcome).toBe("oops");
    expect(r.violations.join("; ")).toMatch(/die\(general protection fault\)/);
  });

  test("survives the bad-user-frame property and the campaign's (the task's DS is __USER_DS there)", () => {
    expect(checkBadIret(DS_MUTANT, { runs: 100 })?.ok).toBe(true);
    const reports = checkVariant(DS_MUTANT, { runs: 120 });
    expect(reports.map((p) => [p.property, p.ok && p.missing.length === 0 ? "held" : "failed"])).toEqual([["emulated ≡ real", "held"], ["handler invariants", "held"]]);
  });
});

describe("x86_32/mutant/espfix-unwound-after-fixup-frame (before a1a338e5b6fe)", () => {
  test("is killed: a fault on the ESPFIX stack gets an offset regs->sp, which IRET_FRAME treats as linear", () => {
    const r = checkEspfix(LATE_MUTANT);
    expect(r?.ok).toBe(false);
    const ce = r?.counterexample as UserSegmentsCase;
    expect(ce.stack).toBe("ldt");
    console.log(json({ mutant: LATE_MUTANT.name, runsToKill: r?.runs, shrinks: r?.shrinks, found: describeUserSegmentsCase(ce), detail: r?.detail }));
  });
});

test("`int3bed mutants` lists both in the exit-path section, killed", () => {
  const log = vi.spyOn(console, "log").mockImplementation(() => undefined);
  const code = mutantsCommand(["--variant", DS_MUTANT.name, "--variant", LATE_MUTANT.name, "--json"]);
  expect(code).toBe(0);
  const doc = JSON.parse(log.mock.calls.map((c) => c.map(String).join(" ")).join("\n")) as { ok: boolean; iret: { ok: boolean; results: { mutant: string; killed: boolean; property: string }[] } };
  expect(doc.ok).toBe(true);
  expect(doc.iret.results).toMatchObject([
    { mutant: DS_MUTANT.name, killed: true, property: "user segments + ESPFIX → exact return" },
    { mutant: LATE_MUTANT.name, killed: true },
  ]);
});
