import { F, Machine, Perm, Smp, type FetchModel } from "../../src/index.js";

// Small machines for the SMP properties: code pages, an interrupt-gate handler, workers.

export const CODE = 0xffffffff81600000n;
export const HANDLER = 0xffffffff81680000n;
export const HOSTS = 0xffffffff81690000n;

/** A machine with `cpus` CPUs, one RX code page at CODE, one at HANDLER and one for host functions. */
export function machine(cpus: number, bits: 32 | 64 = 64): Machine {
  const m = new Machine({ bits, cpus });
  const at = (a: bigint): bigint => (bits === 64 ? a : a & 0xffffffffn);
  m.map(at(CODE), 0x1000, Perm.R | Perm.X).map(at(HANDLER), 0x1000, Perm.R | Perm.X).map(at(HOSTS), 0x1000, Perm.R | Perm.X);
  return m;
}

/** Starts CPUs 1.. at `rip` with IF = 1. */
export function startWorkers(m: Machine, rip: bigint, from = 1): void {
  for (let i = from; i < m.cpus.length; i++) {
    m.cpus[i].rip = rip;
    m.cpus[i].flags |= F.IF;
  }
}

/** `mov $imm32,%eax` */
export function movEax(v: number): number[] {
  return [0xb8, v & 0xff, (v >>> 8) & 0xff, (v >>> 16) & 0xff, (v >>> 24) & 0xff];
}

/** `jmp rel8` from `from` (address of the jmp) to `to`. */
export function jmp8(from: bigint, to: bigint): number[] {
  const rel = Number(to - (from + 2n));
  if (rel < -128 || rel > 127) throw new RangeError("jmp8 out of range");
  return [0xeb, rel & 0xff];
}

/** A runner over a fresh machine whose workers loop over `body` at CODE (followed by a jmp back). */
export function loopRig(cpus: number, body: readonly number[], fetch: FetchModel): { m: Machine; smp: Smp } {
  const m = machine(cpus);
  m.load(CODE, [...body, ...jmp8(CODE + BigInt(body.length), CODE)]);
  const smp = new Smp(m, { fetch });
  startWorkers(m, CODE);
  return { m, smp };
}
