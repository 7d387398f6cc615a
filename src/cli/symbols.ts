import type { Kernel } from "../kernel/kernel.js";
import type { EmuCase } from "../oracle/emulation.js";

/**
 * Names an address the way a kernel developer reads it: `<asm_int3+0x3a>` (nearest kernel
 * symbol below, within 4 KiB), else `<site+0x5>`, `<target>`, `<task stack+0x3f8>`; "" otherwise.
 */
export function symbolizer(k: Kernel, c: EmuCase, target: bigint): (v: bigint) => string {
  const syms = [...k.sym.entries()].sort((a, b) => (a[1] < b[1] ? -1 : a[1] > b[1] ? 1 : 0));
  const L = k.L;
  const size = BigInt(L.threadSize);
  const plus = (name: string, off: bigint): string => `<${name}${off === 0n ? "" : `+0x${off.toString(16)}`}>`;
  return (v) => {
    let best: [string, bigint] | undefined;
    for (const s of syms) if (s[1] <= v) best = s;
    if (best !== undefined && v - best[1] < 0x1000n) return plus(best[0], v - best[1]);
    if (v >= c.site && v < c.site + 16n) return plus("site", v - c.site);
    if (v >= target && v < target + 64n) return plus("target", v - target);
    if (v >= L.stack && v <= L.stack + size) return plus("task stack", v - L.stack);
    if (v >= L.irqStack && v <= L.irqStack + size) return plus("irq stack", v - L.irqStack);
    return "";
  };
}
