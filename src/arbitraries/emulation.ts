import fc from "fast-check";
import { F } from "../machine/flags.js";
import type { KernelLayout } from "../kernel/layout.js";
import type { PatchKind } from "../kernel/variant.js";
import { type EmuCase, insnLength } from "../oracle/emulation.js";
import { regValue } from "./roundtrip.js";

import { CALLEE, COOKIE } from "../oracle/emulation.js";

const CALLEE_LEN_N = Math.max(CALLEE[64].length, CALLEE[32].length);
const CALLEE_LEN = BigInt(CALLEE_LEN_N);
const TWO31 = 1n << 31n;

/** rel8 displacements with the edges weighted in. */
const rel8 = fc.oneof(fc.constantFrom(-128, -127, -1, 0, 1, 126, 127), fc.integer({ min: -128, max: 127 }));
/** rel32 displacements across ±2 GiB with the edges weighted in. */
const rel32 = fc.oneof(
  fc.constantFrom(-(TWO31), -(TWO31) + 64n, TWO31 - 64n, TWO31 - 1n - CALLEE_LEN, 0n, 64n, -64n),
  fc.bigInt({ min: -(TWO31), max: TWO31 - 1n - CALLEE_LEN }),
  fc.bigInt({ min: -0x10000n, max: 0x10000n }),
);

/** Flags: every combination of the six status flags (Jcc reads up to three of them), DF. */
const flags = fc.integer({ min: 0, max: 0xfff }).map((f) => f & (F.CF | F.PF | F.AF | F.ZF | F.SF | F.OF | F.DF));

/** Site ranges: high kernel text, away from the stubs. */
const SITES = { 64: [0xffffffff90000000n, 0xffffffffa0000000n], 32: [0xc4000000n, 0xc8000000n] } as const;

/**
 * Emulated-vs-real cases for a variant: a site in high kernel text, a target across
 * ±2 GiB (rel8 edges for the short forms; wrapping at 2^32 on 32-bit), random registers, flags, IF on and off, the trap
 * taken on the task stack or an IRQ stack, SP anywhere in the stack at any alignment (both
 * 16-byte classes), random stack contents.
 */
export function emuCase(L: KernelLayout, kinds: readonly PatchKind[]): fc.Arbitrary<EmuCase> {
  const W = L.word;
  return fc.record({
    kind: fc.constantFrom(...kinds),
    cc: fc.integer({ min: 0, max: 15 }),
    site: fc.bigInt({ min: SITES[L.bits][0], max: SITES[L.bits][1] }),
    rel8, rel32,
    regs: fc.array(regValue(L.bits), { minLength: 16, maxLength: 16 }),
    flags,
    ifOn: fc.boolean(),
    stack: fc.constantFrom("task" as const, "irq" as const),
    // leave room below for the kernel's frames and above for a RET's return address
    // 16-byte slot + residue: on 64-bit the two 8-byte-aligned classes are weighted in; on
    // 32-bit the residue is uniform, so every ESP mod 4 class comes up equally. Slots that are
    // multiples of 4 (R ≡ 0 mod 64, where FRED's frame meets the red zone) are weighted in too.
    spOffset: fc.tuple(
      fc.oneof(
        fc.integer({ min: 64, max: Math.floor((L.threadSize - 2 * W) / 16) - 1 }),
        fc.integer({ min: 16, max: Math.floor((L.threadSize - 2 * W) / 64) - 1 }).map((q) => q * 4),
      ),
      W === 8 ? fc.oneof(fc.constantFrom(0, 8), fc.integer({ min: 0, max: 15 })) : fc.integer({ min: 0, max: 15 }),
    ).map(([slot, r]) => slot * 16 + r),
    stackBytes: fc.uint8Array({ minLength: 1, maxLength: 32 }),
  }).map((r) => {
    const len = BigInt(insnLength(r.kind));
    const short = r.kind === "jmp8" || r.kind === "jcc8";
    const rel = short ? BigInt(r.rel8) : r.rel32;
    const target = BigInt.asUintN(L.bits, r.site + len + rel);
    return { kind: r.kind, cc: r.cc, site: r.site, target, regs: r.regs, flags: r.flags, ifOn: r.ifOn, stack: r.stack, spOffset: r.spOffset, stackBytes: r.stackBytes };
  }).filter((c) => {
    // The target's bytes (callee or hlt) must not overlap the site or the stubs.
    const len = BigInt(insnLength(c.kind));
    // (a ternary between two bigint constants feeding arithmetic crashes Node 20's TurboFan:
    // choose a number, then convert)
    const tEnd = c.target + BigInt(c.kind === "call" ? CALLEE_LEN_N : 1);
    const overlapsSite = c.target < c.site + len && tEnd > c.site - 1n;
    const near = (lo: bigint, hi: bigint): boolean => c.target < hi + 0x2000n && tEnd > lo - 0x2000n;
    const inStubs = near(L.text, L.siteText + 0x10000n);
    const inData = near(L.stack, L.stack + BigInt(L.threadSize)) || near(L.irqStack, L.irqStack + BigInt(L.threadSize)) || near(COOKIE[L.bits], COOKIE[L.bits] + 0x1000n);
    const wraps = tEnd >= 1n << BigInt(L.bits) || c.target < 0x2000n;
    return !overlapsSite && !inStubs && !inData && !wraps;
  });
}
