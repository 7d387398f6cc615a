import type { Cpu } from "../machine/cpu.js";
import { decodeBytes } from "../machine/decoder.js";
import type { Insn } from "../machine/insn.js";
import type { StaleView } from "./stale.js";

/**
 * What a fetch saw, where a stale byte was within reach: `current` (every byte as memory
 * holds it), `stale` (some bytes from before another CPU's writes, none refreshed in this
 * fetch), `torn` (old and new bytes mixed in one instruction).
 */
export type FetchOutcome = "current" | "stale" | "torn";

/** A fetch that did not see memory as it is: which CPU, where, what it executed, what memory held. */
export interface FetchEvent {
  readonly step: number;
  readonly cpu: number;
  readonly addr: bigint;
  readonly outcome: Exclude<FetchOutcome, "current">;
  readonly seen: Uint8Array;
  readonly memory: Uint8Array;
}

/** The instruction a fetch sees and how it relates to memory. */
export interface FetchSeen {
  readonly outcome: FetchOutcome;
  readonly insn: Insn;
  readonly memory: Uint8Array;
}

const cache = new Map<string, Insn>();

/**
 * The SDM fetch at the CPU's RIP, given the instruction memory holds there (`mem`) and the
 * CPU's stale view: for each stale byte inside the instruction, in address order, one
 * choice — 0 sees memory now (and drops the stale byte for good), 1 keeps the old byte; the
 * instruction is re-decoded after each kept byte, since its length may change. Returns null
 * when no stale byte is within the instruction.
 */
export function fetchView(c: Cpu, mem: Insn, view: StaleView, choose: (n: number) => number): FetchSeen | null {
  const lo = c.ripLo, hi = c.ripHi;
  const key0 = (hi >>> 0) * 1048576 + (lo >>> 12), off0 = lo & 4095;
  if (!view.touches(key0, off0, mem.len)) return null;
  const win = memoryWindow(c, key0, off0);
  const seen = win.slice();
  let insn = mem;
  let kept = 0, refreshed = 0;
  for (let j = 0; j < insn.len && j < win.length; j++) {
    const o = off0 + j;
    const key = o < 4096 ? key0 : key0 + 1, off = o & 4095;
    const old = view.get(key, off);
    if (old === undefined) continue;
    if (old === win[j]) { view.drop(key, off); continue; }
    if (choose(2) === 0) { view.drop(key, off); refreshed++; continue; }
    seen[j] = old;
    kept++;
    const d = decode(c, lo, hi, seen);
    if (d === undefined) { seen[j] = win[j]; kept--; continue; } // cut short by an unmapped page: see memory
    insn = d;
  }
  const memory = win.slice(0, insn.len);
  if (kept === 0) return { outcome: "current", insn: mem, memory };
  return { outcome: refreshed > 0 ? "torn" : "stale", insn, memory };
}

/** Up to 15 bytes of memory from the CPU's RIP, stopping at an unmapped page. */
function memoryWindow(c: Cpu, key: number, off: number): Uint8Array {
  const pages = c.mem.pages;
  const out = new Uint8Array(15);
  let p = pages.get(key);
  for (let j = 0; j < 15; j++) {
    const o = off + j;
    if (o === 4096) p = pages.get(key + 1);
    if (p === undefined) return out.slice(0, j);
    out[j] = p.data[o & 4095];
  }
  return out;
}

function decode(c: Cpu, lo: number, hi: number, bytes: Uint8Array): Insn | undefined {
  const k = `${c.bits}:${lo}:${hi}:${Array.from(bytes).join(",")}`;
  let d = cache.get(k);
  if (d === undefined) {
    d = decodeBytes(c.bits, lo, hi, bytes);
    if (d === undefined) return undefined;
    if (cache.size > 4096) cache.clear();
    cache.set(k, d);
  }
  return d;
}
