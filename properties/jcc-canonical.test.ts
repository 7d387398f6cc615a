import { describe, expect, test } from "vitest";
import { F, Machine, Perm } from "../src/index.js";
import type { ExceptionEvent } from "../src/machine/events.js";

/**
 * Jcc in 64-bit mode (SDM Vol. 2 Jcc): a taken branch to a non-canonical target raises
 * #GP(0) at the Jcc, nothing changed; not taken, it falls through. Checked for both compile
 * paths: the decoder's (ops-flow.ts, the first Jcc of a form a machine sees) and the decode
 * cache's (decode-cache.ts branchExec, the same form at another address).
 */
const TOP = 0x00007ffffffff000n; // the last canonical page of the lower half
const STACK = 0x10000n;

/** A machine with two `jz rel32` at the top page, each branching past 2^47: non-canonical. */
function rig(): Machine {
  const m = new Machine({ bits: 64 });
  m.map(TOP, 0x1000, Perm.R | Perm.X).map(STACK, 0x2000);
  // jz rel32 at +0x00 and at +0x40, each followed by hlt
  for (const at of [0x00n, 0x40n]) {
    const next = TOP + at + 6n, target = 0x0000800000000000n + 0x40n;
    const rel = Number(BigInt.asIntN(32, target - next));
    m.load(TOP + at, [0x0f, 0x84, rel & 0xff, (rel >>> 8) & 0xff, (rel >>> 16) & 0xff, (rel >>> 24) & 0xff, 0xf4]);
  }
  m.cpu.sp = STACK + 0x1000n;
  return m;
}

function runAt(m: Machine, at: bigint, zf: boolean): { ev: ExceptionEvent | undefined; reason: string; rip: bigint } {
  let ev: ExceptionEvent | undefined;
  const off = m.onException((_c, e) => { ev = e; return "stop"; });
  m.cpu.rip = TOP + at;
  m.cpu.flags = 0x2 | F.CF | (zf ? F.ZF : 0);
  const r = m.run({ maxSteps: 10 });
  off();
  return { ev, reason: r.reason, rip: m.cpu.rip };
}

describe("Jcc to a non-canonical target (64-bit)", () => {
  for (const [path, at] of [["decoder (ops-flow)", 0x00n], ["decode cache (branchExec)", 0x40n]] as const) {
    test(`${path}: taken → #GP(0) at the Jcc, RIP and RSP unchanged`, () => {
      const m = rig();
      if (at !== 0x00n) runAt(m, 0x00n, false); // the machine learns the form from the decoder first
      const sp = m.cpu.sp;
      const { ev, reason, rip } = runAt(m, at, true);
      expect(reason).toBe("exception");
      expect(ev?.vector).toBe(13);
      expect(ev?.errorCode).toBe(0);
      expect(ev?.ip).toBe(TOP + at);
      expect(ev?.savedIp).toBe(TOP + at);
      expect(rip).toBe(TOP + at);
      expect(m.cpu.sp).toBe(sp);
    });

    test(`${path}: not taken → falls through to the HLT`, () => {
      const m = rig();
      if (at !== 0x00n) runAt(m, 0x00n, false);
      const { ev, reason, rip } = runAt(m, at, false);
      expect(ev).toBeUndefined();
      expect(reason).toBe("hlt");
      expect(rip).toBe(TOP + at + 7n);
    });
  }
});
