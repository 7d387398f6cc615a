import { describe, expect, test } from "vitest";
import fc from "fast-check";
import { emuCase } from "../src/arbitraries/emulation.js";
import { variantByName } from "../src/kernel/registry.js";
import { PATCH_KINDS } from "../src/kernel/variant.js";
import { armSite, insnLength, loadCase, prepare, runEmuCase } from "../src/oracle/emulation.js";

// What the check engine reuses between cases (round 7: runEmuCase's layout, armSite's
// text_poke_bp batch, the empty bp_desc) stays out of what users keep: results, and other
// kernels' state.

const show = (x: unknown): string => JSON.stringify(x, (_k, v: unknown) => (typeof v === "bigint" ? `${v}n` : v instanceof Uint8Array ? Array.from(v) : v));

describe("reuse between cases", () => {
  test("a result reads the same after later cases as right after its own", () => {
    const b = prepare(variantByName("x86_64/v6.2"));
    const cases = fc.sample(emuCase(b.k.L, PATCH_KINDS), { numRuns: 60, seed: 11 });
    const kept = cases.map((c) => { const r = runEmuCase(b, c); return { r, now: show([r.equal, r.diff, r.real, r.emulated, r.realEvents, r.emulatedEvents, r.target]) }; });
    for (const { r, now } of kept) expect(show([r.equal, r.diff, r.real, r.emulated, r.realEvents, r.emulatedEvents, r.target])).toBe(now);
  });

  test("armSite declares exactly the case's site: one entry, one reference, the case's address, length, opcode and displacement", () => {
    const b = prepare(variantByName("x86_64/v6.2"));
    const OPC: Record<string, number> = { call: 0xe8, jmp32: 0xe9, jmp8: 0xeb, nop2: 0xeb, nop5: 0xe9, ret: 0xc3, jcc8: 0x70, jcc32: 0x70 };
    for (const c of fc.sample(emuCase(b.k.L, PATCH_KINDS), { numRuns: 80, seed: 12 })) {
      const lc = loadCase(b, c);
      armSite(b, c, lc);
      const d = b.k.bpDesc;
      expect(d.refs).toBe(1);
      expect(d.vec.length).toBe(1);
      const t = d.vec[0];
      const len = insnLength(c.kind);
      const noDisp = c.kind === "nop2" || c.kind === "nop5" || c.kind === "ret";
      expect([t.addr, t.len, t.opcode, t.disp]).toEqual([c.site, len, OPC[c.kind] | (c.kind.startsWith("jcc") ? c.cc : 0), noDisp ? 0n : BigInt.asIntN(64, c.target - c.site - BigInt(len))]);
      expect([t.addrLo, t.addrHi]).toEqual([Number(BigInt.asIntN(32, c.site)), Number(BigInt.asIntN(32, c.site >> 32n))]);
    }
  });

  test("two kernels never share a bp_desc: an entry added to one's is not in the other's", () => {
    const a = prepare(variantByName("x86_64/v5.2")), b = prepare(variantByName("x86_64/v5.2")); // (ftrace: armSite leaves the empty one)
    const [c] = fc.sample(emuCase(a.k.L, ["call"]), { numRuns: 1, seed: 13 });
    for (const x of [a, b]) {
      x.k.bpDesc.vec.push({ addr: 2n, len: 5, opcode: 0xe8, disp: 0n }); // (so that the next case's reset replaces it)
      expect(runEmuCase(x, c).equal).toBe(true);
      expect(x.k.bpDesc.vec.length).toBe(0);
    }
    expect(a.k.bpDesc).not.toBe(b.k.bpDesc);
    a.k.bpDesc.vec.push({ addr: 1n, len: 5, opcode: 0xe8, disp: 0n });
    expect(b.k.bpDesc.vec.length).toBe(0);
    const r = runEmuCase(a, c); // and the next case starts from an empty one again
    expect(r.equal).toBe(true);
    expect(a.k.bpDesc.vec.length).toBe(0);
  });

  test("a batch changed after a case is armed afresh by the next (text_poke_bp variants)", () => {
    const b = prepare(variantByName("x86_64/v5.6"));
    const [c, c2] = fc.sample(emuCase(b.k.L, ["call"]), { numRuns: 2, seed: 14 });
    runEmuCase(b, c);
    b.k.bpDesc.vec.push({ addr: c2.site, len: 2, opcode: 0xeb, disp: 0n });
    b.k.bpDesc.refs = 3;
    const r = runEmuCase(b, c2);
    expect(r.equal).toBe(true);
    expect(b.k.bpDesc.vec.map((t) => t.addr)).toEqual([c2.site]);
    expect(b.k.bpDesc.refs).toBe(1);
  });
});
