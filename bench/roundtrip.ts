import { Machine, Perm, SEL32 } from "../src/index.js";
import { report, timeIt } from "./harness.js";

/** int3 → delivery → an IRET stub → back, in a loop: `1: int3; jmp 1b`. */
export function benchRoundtrip(): void {
  for (const bits of [64, 32] as const) {
    const m = new Machine({ bits });
    const code = bits === 64 ? 0xffffffff81000000n : 0xc1000000n;
    const stack = bits === 64 ? 0xffffc90000000000n : 0xc2000000n;
    m.map(code, 0x2000, Perm.R | Perm.X).map(stack, 0x4000);
    m.load(code, [0xcc, 0xeb, 0xfd]);
    m.load(code + 0x1000n, bits === 64 ? [0x48, 0xcf] : [0xcf]);
    m.setGate(3, { handler: code + 0x1000n, dpl: 3 });
    m.cpu.rip = code; m.cpu.sp = stack + 0x2000n;
    void SEL32;
    const n = 100_000; // round trips per run: int3 + iret + jmp = 3 instructions each
    const { rate } = timeIt(() => m.run({ maxSteps: 3 * n }).steps / 3);
    report(`int3.roundtrip.${bits}`, rate, "roundtrips/s");
  }
}
