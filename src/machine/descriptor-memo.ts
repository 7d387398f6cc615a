import type { Cpu } from "./cpu.js";
import { fetchDescriptor } from "./segments.js";
import { decodeDescriptor, descriptorOf, type SegmentDescriptor } from "./tables.js";

// The dwords of the in-memory descriptor decoded last, and what they decode to.
let memoLo = 0, memoHi = 0, memoSet = false;
let memoD: SegmentDescriptor | undefined;

/**
 * lookupDescriptor (segments.ts) for the look-ups every event makes — the gate's code segment
 * on delivery, the popped CS on IRET — with the same result: a typed-table entry as is; an
 * in-memory descriptor read from its table every time (the read may fault, be watched or
 * find other bytes) and decoded, unless its dwords are the ones decoded last time
 * (decodeDescriptor depends on the dwords alone). Skipped: segments.ts's per-CPU cache
 * search (a WeakMap and a Map look-up) and the decoding, on the i386 path every trap takes.
 */
export function lookupDescriptorMemo(c: Cpu, sel: number): SegmentDescriptor | undefined {
  if ((sel & 4) === 0 && !c.gdtrOn) return descriptorOf(c.gdt, sel);
  if ((sel & 0xfffc) === 0 || !fetchDescriptor(c, sel)) return undefined;
  const lo = c.dLo, hi = c.dHi;
  if (memoSet === true && lo === memoLo && hi === memoHi) return memoD;
  memoD = decodeDescriptor(lo, hi);
  memoLo = lo; memoHi = hi; memoSet = true;
  return memoD;
}
