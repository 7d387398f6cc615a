import { type Instruction, MemorySizeExt, Mnemonic, OpKind, Register } from "iced-x86";
import type { Cpu } from "./cpu.js";
import type { Exec } from "./insn.js";
import { compileEa, gpr } from "./operands.js";

/**
 * MOV between a full-width register (4 or 8 bytes) and memory: the loads and stores of
 * callees and C-like code (`mov (%rsp),%r11`, `mov %r11,(%rax)`, `mov 8(%esp),%eax`). The
 * generic path (ops-data.ts) goes through two operand objects whose get/set calls V8 cannot
 * inline; here one closure computes the address and calls Memory.read/write directly. The
 * semantics are the generic path's: the same address (operands.ts compileEa: segment base in
 * 32-bit mode, SS for ESP/EBP bases, the carry into the high half in 64-bit mode), the same
 * access (size, SS-relative or not: the fault is the same), the same scratch it leaves
 * (c.aLo/c.aHi/c.eaHi after a load, c.th as the operand read leaves it). Base + disp addresses
 * (64-bit: with the carry; i386: through the segment) are computed inline; every other shape
 * uses compileEa's closure.
 */
export function compileMovFast(ins: Instruction, bits: number): Exec | undefined {
  if (ins.mnemonic !== Mnemonic.Mov || ins.opCount !== 2) return undefined;
  const load = ins.op0Kind === OpKind.Register && ins.op1Kind === OpKind.Memory;
  const store = ins.op0Kind === OpKind.Memory && ins.op1Kind === OpKind.Register;
  if (!load && !store) return undefined;
  const g = gpr(load ? ins.op0Register : ins.op1Register);
  if (g === undefined || g[2] || (g[1] !== 8 && g[1] !== 4)) return undefined;
  const [r, size] = g;
  if (MemorySizeExt.size(ins.memorySize) !== size) return undefined;
  const { ea, stack } = compileEa(ins, bits); // (throws Unsupported for shapes the machine refuses: the caller makes #UD)
  const inline = ins.memoryIndex === Register.None && !ins.isIpRelMemoryOperand;
  const base = inline && ins.memoryBase !== Register.None ? gpr(ins.memoryBase) : undefined;
  if (inline && ins.memoryBase !== Register.None && (base === undefined || base[1] !== bits / 8)) return undefined; // (16-bit or 32-bit-in-64 addressing: generic)
  const b = base === undefined ? -1 : base[0];
  if (bits === 64 && b >= 0) {
    // 64-bit base + disp: the sum with its carry, as compileEa
    const disp = BigInt.asUintN(64, ins.memoryDisplacement);
    const dLo = Number(disp & 0xffffffffn), dHi = Number(BigInt.asIntN(32, disp >> 32n));
    if (size === 8) return load ? load64Base(r, b, dLo, dHi, stack) : store64Base(r, b, dLo, dHi, stack);
    if (load) return (c) => { const s = (c.lo[b] >>> 0) + dLo, h = (c.hi[b] + dHi + (s >= 4294967296 ? 1 : 0)) | 0, a = s | 0; c.eaHi = h; c.aLo = a; c.aHi = h; c.lo[r] = c.mem.read32(a, h, stack); c.hi[r] = 0; };
    return (c) => { const v = c.lo[r], s = (c.lo[b] >>> 0) + dLo, h = (c.hi[b] + dHi + (s >= 4294967296 ? 1 : 0)) | 0; c.eaHi = h; c.mem.write32(s | 0, h, v, stack); };
  }
  if (bits === 32 && b >= 0) {
    // i386 base + disp: the linear address through the operand's segment (its base, and the
    // high half a null segment carries), as compileEa's segmentedEa, without its call
    const sr = ins.memorySegment, s = sr >= Register.ES && sr <= Register.GS ? sr - Register.ES : 3; // (as operands.ts segNumber)
    const dLo = Number(BigInt.asUintN(32, ins.memoryDisplacement));
    if (load) return (c) => { const h = c.segHi[s], a = (c.lo[b] + dLo + c.segBase[s]) | 0; c.eaHi = h; c.aLo = a; c.aHi = h; c.lo[r] = c.mem.read32(a, h, stack); c.hi[r] = 0; };
    return (c) => { const v = c.lo[r], h = c.segHi[s]; c.eaHi = h; c.mem.write32((c.lo[b] + dLo + c.segBase[s]) | 0, h, v, stack); };
  }
  // every other shape through compileEa's closure (32-bit: the linear address through the segment's base)
  if (size === 8) return load ? load64(r, ea, stack) : store64(r, ea, stack);
  return load ? load32(r, ea, stack) : store32(r, ea, stack);
}

type Ea = (c: Cpu) => number;

// (64-bit base + disp, 8 bytes, the commonest: made by functions taking the operands as
// parameters — a closure over compileMovFast's consts re-tested each for the temporal dead
// zone at every use)
function load64Base(r: number, b: number, dLo: number, dHi: number, stack: boolean): Exec {
  return (c) => { const s = (c.lo[b] >>> 0) + dLo, h = (c.hi[b] + dHi + (s >= 4294967296 ? 1 : 0)) | 0, a = s | 0; c.eaHi = h; c.aLo = a; c.aHi = h; const v = c.mem.read64(a, h, stack); const t = c.mem.rhi; c.th = t; c.lo[r] = v; c.hi[r] = t; };
}

function store64Base(r: number, b: number, dLo: number, dHi: number, stack: boolean): Exec {
  return (c) => { const vl = c.lo[r], vh = c.hi[r]; c.th = vh; const s = (c.lo[b] >>> 0) + dLo, h = (c.hi[b] + dHi + (s >= 4294967296 ? 1 : 0)) | 0; c.eaHi = h; c.mem.write64(s | 0, h, vl, vh, stack); };
}

function load64(r: number, ea: Ea, stack: boolean): Exec {
  return (c) => { const a = ea(c); c.aLo = a; c.aHi = c.eaHi; const v = c.mem.read64(a, c.eaHi, stack); const t = c.mem.rhi; c.th = t; c.lo[r] = v; c.hi[r] = t; };
}

function load32(r: number, ea: Ea, stack: boolean): Exec {
  return (c) => { const a = ea(c); c.aLo = a; c.aHi = c.eaHi; c.lo[r] = c.mem.read32(a, c.eaHi, stack); c.hi[r] = 0; };
}

function store64(r: number, ea: Ea, stack: boolean): Exec {
  return (c) => { const vl = c.lo[r], vh = c.hi[r]; c.th = vh; const a = ea(c); c.mem.write64(a, c.eaHi, vl, vh, stack); };
}

function store32(r: number, ea: Ea, stack: boolean): Exec {
  return (c) => { const v = c.lo[r], a = ea(c); c.mem.write32(a, c.eaHi, v, stack); };
}
