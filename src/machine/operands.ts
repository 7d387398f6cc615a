import { type Instruction, MemorySizeExt, OpKind, Register } from "iced-x86";
import type { Cpu } from "./cpu.js";
import { hiOf, loOf } from "./u64.js";

/**
 * Compiled operand accessors. Values travel as int32 halves: `get` returns the low half
 * (zero-extended for 1- and 2-byte operands) and leaves the high half of an 8-byte value
 * in c.th. A memory `get` remembers its address in c.aLo/c.aHi so that a read-modify-write
 * instruction's `setSame` writes back to the same place without recomputing it.
 */
export interface Operand {
  readonly size: number;
  readonly kind: "reg" | "mem" | "imm";
  /** Register number (0–15) for kind "reg"; -1 otherwise. */
  readonly reg: number;
  readonly get: (c: Cpu) => number;
  readonly set: (c: Cpu, lo: number, hi: number) => void;
  readonly setSame: (c: Cpu, lo: number, hi: number) => void;
}

/** Effective address: returns the low half, leaves the high half in c.eaHi. */
export type Ea = (c: Cpu) => number;

/** Maps an iced general register to [number, size, high-byte]; undefined for others. */
export function gpr(r: Register): [number, number, boolean] | undefined {
  if (r >= Register.AL && r <= Register.BL) return [r - Register.AL, 1, false];
  if (r >= Register.AH && r <= Register.BH) return [r - Register.AH, 1, true];
  if (r >= Register.SPL && r <= Register.R15L) return [r - Register.SPL + 4, 1, false];
  if (r >= Register.AX && r <= Register.R15W) return [r - Register.AX, 2, false];
  if (r >= Register.EAX && r <= Register.R15D) return [r - Register.EAX, 4, false];
  if (r >= Register.RAX && r <= Register.R15) return [r - Register.RAX, 8, false];
  return undefined;
}

/** Thrown at compile time for operand shapes the machine does not execute (becomes #UD). */
export class Unsupported {
  constructor(readonly why: string) {}
}

export function regOperand(r: Register): Operand {
  const g = gpr(r);
  if (g === undefined) throw new Unsupported(`register ${Register[r]}`);
  const [n, size, high] = g;
  let get: (c: Cpu) => number;
  let set: (c: Cpu, lo: number, hi: number) => void;
  switch (size) {
    case 8:
      get = (c) => { c.th = c.hi[n]; return c.lo[n]; };
      set = (c, lo, hi) => { c.lo[n] = lo; c.hi[n] = hi; };
      break;
    case 4:
      get = (c) => c.lo[n];
      set = (c, lo) => { c.lo[n] = lo; c.hi[n] = 0; };
      break;
    case 2:
      get = (c) => c.lo[n] & 0xffff;
      set = (c, lo) => { c.lo[n] = (c.lo[n] & ~0xffff) | (lo & 0xffff); };
      break;
    default:
      if (high) {
        get = (c) => (c.lo[n] >> 8) & 0xff;
        set = (c, lo) => { c.lo[n] = (c.lo[n] & ~0xff00) | ((lo & 0xff) << 8); };
      } else {
        get = (c) => c.lo[n] & 0xff;
        set = (c, lo) => { c.lo[n] = (c.lo[n] & ~0xff) | (lo & 0xff); };
      }
  }
  return { size, kind: "reg", reg: n, get, set, setSame: set };
}

export function immOperand(value: bigint, size: number): Operand {
  const lo = size === 1 ? Number(value & 0xffn) : size === 2 ? Number(value & 0xffffn) : loOf(value);
  const hi = size === 8 ? hiOf(value) : 0;
  const get = (c: Cpu): number => { c.th = hi; return lo; };
  const bad = (): void => { throw new Error("write to an immediate"); };
  return { size, kind: "imm", reg: -1, get, set: bad, setSame: bad };
}

/** The segment register number (segments.ts SEG) of an iced segment register. */
function segNumber(r: Register): number {
  switch (r) {
    case Register.ES: return 0;
    case Register.CS: return 1;
    case Register.SS: return 2;
    case Register.FS: return 4;
    case Register.GS: return 5;
    default: return 3;
  }
}

/**
 * Compiles the memory operand's address computation (base + index*scale + disp, or
 * RIP-relative). `linear` (the default) adds the base of the operand's segment in 32-bit
 * mode — SS for ESP/EBP bases, DS otherwise, or the override — and carries the segment's
 * high half (nonzero only for a null DS/ES/FS/GS, which makes the access fault); LEA asks
 * for the offset alone. `stack` says the access is SS-relative (a fault is then #SS, not
 * #GP). 64-bit mode ignores the bases; FS/GS there are not modeled.
 */
export function compileEa(ins: Instruction, bits: number, linear = true): { ea: Ea; stack: boolean } {
  const seg = segNumber(ins.memorySegment);
  const stack = seg === 2;
  if (bits === 64 && (seg === 4 || seg === 5) && linear) throw new Unsupported("FS/GS segment in 64-bit mode");
  if (ins.isIpRelMemoryOperand) {
    const a = ins.ipRelMemoryAddress;
    const lo = loOf(a), hi = bits === 64 ? hiOf(a) : 0;
    return { ea: (c) => { c.eaHi = hi; return lo; }, stack };
  }
  const base = ins.memoryBase === Register.None ? undefined : gpr(ins.memoryBase);
  const index = ins.memoryIndex === Register.None ? undefined : gpr(ins.memoryIndex);
  if ((ins.memoryBase !== Register.None && base === undefined) || (ins.memoryIndex !== Register.None && index === undefined)) {
    throw new Unsupported("memory operand with a non-general register");
  }
  const asz = base ? base[1] : index ? index[1] : bits === 64 ? 8 : 4;
  const disp = ins.memoryDisplacement;
  const dLo = loOf(disp) >>> 0, dHi = asz === 8 ? hiOf(disp) : 0;
  const scale = ins.memoryIndexScale;
  const b = base ? base[0] : -1, x = index ? index[0] : -1;
  if (bits === 32 && linear) return { ea: segmentedEa(asz, b, x, scale, dLo, seg), stack };
  let ea: Ea;
  if (asz === 2) {
    // 16-bit addressing (0x67 in 32-bit code): the sum wraps at 64 KiB.
    const d16 = dLo & 0xffff;
    ea = (c) => { c.eaHi = 0; return ((b >= 0 ? c.lo[b] : 0) + (x >= 0 ? c.lo[x] : 0) + d16) & 0xffff; };
  } else if (asz === 4) {
    if (b >= 0 && x >= 0) ea = (c) => { c.eaHi = 0; return (c.lo[b] + c.lo[x] * scale + dLo) | 0; };
    else if (b >= 0) ea = (c) => { c.eaHi = 0; return (c.lo[b] + dLo) | 0; };
    else if (x >= 0) ea = (c) => { c.eaHi = 0; return (c.lo[x] * scale + dLo) | 0; };
    else { const k = dLo | 0; ea = (c) => { c.eaHi = 0; return k; }; }
  } else {
    if (b >= 0 && x >= 0) {
      ea = (c) => {
        const s = (c.lo[b] >>> 0) + (c.lo[x] >>> 0) * scale + dLo;
        const carry = Math.floor(s / 4294967296);
        c.eaHi = (c.hi[b] + c.hi[x] * scale + dHi + carry) | 0;
        return s | 0;
      };
    } else if (b >= 0) {
      ea = (c) => {
        const s = (c.lo[b] >>> 0) + dLo;
        c.eaHi = (c.hi[b] + dHi + (s >= 4294967296 ? 1 : 0)) | 0;
        return s | 0;
      };
    } else if (x >= 0) {
      ea = (c) => {
        const s = (c.lo[x] >>> 0) * scale + dLo;
        c.eaHi = (c.hi[x] * scale + dHi + Math.floor(s / 4294967296)) | 0;
        return s | 0;
      };
    } else {
      const l = dLo | 0, h = dHi;
      ea = (c) => { c.eaHi = h; return l; };
    }
  }
  return { ea, stack };
}

/**
 * 32-bit protected mode: the linear address segment base + offset (wrapping at 4 GiB), with
 * the segment's high half in c.eaHi. One closure per address shape for every segment (the
 * segment is an index), so the operand accessors' calls stay as monomorphic as before.
 */
function segmentedEa(asz: number, b: number, x: number, scale: number, dLo: number, s: number): Ea {
  if (asz === 2) {
    const d16 = dLo & 0xffff;
    return (c) => { c.eaHi = c.segHi[s]; return ((((b >= 0 ? c.lo[b] : 0) + (x >= 0 ? c.lo[x] : 0) + d16) & 0xffff) + c.segBase[s]) | 0; };
  }
  if (b >= 0 && x >= 0) return (c) => { c.eaHi = c.segHi[s]; return (c.lo[b] + c.lo[x] * scale + dLo + c.segBase[s]) | 0; };
  if (b >= 0) return (c) => { c.eaHi = c.segHi[s]; return (c.lo[b] + dLo + c.segBase[s]) | 0; };
  if (x >= 0) return (c) => { c.eaHi = c.segHi[s]; return (c.lo[x] * scale + dLo + c.segBase[s]) | 0; };
  return (c) => { c.eaHi = c.segHi[s]; return (dLo + c.segBase[s]) | 0; };
}

export function memOperand(ins: Instruction, bits: number, size: number): Operand {
  const { ea, stack } = compileEa(ins, bits);
  let get: (c: Cpu) => number;
  let set: (c: Cpu, lo: number, hi: number) => void;
  let setSame: (c: Cpu, lo: number, hi: number) => void;
  switch (size) {
    case 8:
      get = (c) => { const a = ea(c); c.aLo = a; c.aHi = c.eaHi; const v = c.mem.read64(a, c.eaHi, stack); c.th = c.mem.rhi; return v; };
      set = (c, lo, hi) => { const a = ea(c); c.mem.write64(a, c.eaHi, lo, hi, stack); };
      setSame = (c, lo, hi) => c.mem.write64(c.aLo, c.aHi, lo, hi, stack);
      break;
    case 4:
      get = (c) => { const a = ea(c); c.aLo = a; c.aHi = c.eaHi; return c.mem.read32(a, c.eaHi, stack); };
      set = (c, lo) => { const a = ea(c); c.mem.write32(a, c.eaHi, lo, stack); };
      setSame = (c, lo) => c.mem.write32(c.aLo, c.aHi, lo, stack);
      break;
    case 2:
      get = (c) => { const a = ea(c); c.aLo = a; c.aHi = c.eaHi; return c.mem.read16(a, c.eaHi, stack); };
      set = (c, lo) => { const a = ea(c); c.mem.write16(a, c.eaHi, lo, stack); };
      setSame = (c, lo) => c.mem.write16(c.aLo, c.aHi, lo, stack);
      break;
    case 1:
      get = (c) => { const a = ea(c); c.aLo = a; c.aHi = c.eaHi; return c.mem.read8(a, c.eaHi); };
      set = (c, lo) => { const a = ea(c); c.mem.write8(a, c.eaHi, lo); };
      setSame = (c, lo) => c.mem.write8(c.aLo, c.aHi, lo);
      break;
    default:
      throw new Unsupported(`memory operand of ${size} bytes`);
  }
  return { size, kind: "mem", reg: -1, get, set, setSame };
}

/** The size in bytes of operand `i`'s data. */
export function operandSize(ins: Instruction, i: number): number {
  const k = ins.opKind(i);
  if (k === OpKind.Register) {
    const g = gpr(ins.opRegister(i));
    if (g === undefined) throw new Unsupported(`register ${Register[ins.opRegister(i)]}`);
    return g[1];
  }
  if (k === OpKind.Memory) return MemorySizeExt.size(ins.memorySize);
  switch (k) {
    case OpKind.Immediate8: return 1;
    case OpKind.Immediate16: case OpKind.Immediate8to16: return 2;
    case OpKind.Immediate32: case OpKind.Immediate8to32: return 4;
    default: return 8;
  }
}

/** Compiles operand `i` at data size `size` (immediates are sign-extended to it by iced). */
export function operand(ins: Instruction, i: number, bits: number, size: number): Operand {
  const k = ins.opKind(i);
  if (k === OpKind.Register) return regOperand(ins.opRegister(i));
  if (k === OpKind.Memory) return memOperand(ins, bits, size);
  if (k >= OpKind.Immediate8 && k <= OpKind.Immediate32to64 && k !== OpKind.Immediate8_2nd) {
    return immOperand(BigInt.asUintN(64, ins.immediate(i)), size);
  }
  throw new Unsupported(`operand kind ${OpKind[k]}`);
}
