import type { Cpu } from "./cpu.js";
import { SEG } from "./segments.js";

/**
 * True when `c.setCs(sel)` in 64-bit mode (selectCs) would change nothing: CS already holds
 * the selector (the field and the segment register) and memory's privilege is already the
 * selector's (user for RPL 3). Delivery and IRETQ between kernel code set the CS they run
 * on (selectCs: 75 host instructions per 64-bit check on main, measured; none with this). Memory's
 * privilege follows CPL (run and step sync it on entry, selectCs keeps it in step between), so
 * the last term holds whenever the first two do; it is kept so that the answer never rests on that.
 */
export function sameCs(c: Cpu, sel: number): boolean {
  const s = sel & 0xffff;
  return c.cs === s && c.segSel[SEG.CS] === s && c.mem.user === ((sel & 3) === 3);
}
