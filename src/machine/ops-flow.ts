import { Code, type Instruction, Mnemonic, OpKind } from "iced-x86";
import type { Cpu } from "./cpu.js";
import { testCondition } from "./flags.js";
import type { Exec } from "./insn.js";
import { operand, operandSize, Unsupported } from "./operands.js";
import { hiOf, isCanonical, loOf } from "./u64.js";

/** Stack and control flow: PUSH/POP, LEAVE, CALL/JMP/RET, Jcc. RIP already holds the next address. */
export function compileFlow(ins: Instruction, bits: number): Exec | undefined {
  const m = ins.mnemonic;
  const W = bits === 64 ? 8 : 4;
  switch (m) {
    case Mnemonic.Push: {
      const size = -ins.stackPointerIncrement;
      const s = operand(ins, 0, bits, size);
      if (size === W) return (c) => { const v = s.get(c); c.pushW(v, c.th); };
      if (size === 2) return (c) => c.push16(s.get(c));
      throw new Unsupported(`push of ${size} bytes`);
    }
    case Mnemonic.Pop: {
      const size = ins.stackPointerIncrement;
      const d = operand(ins, 0, bits, size);
      // The destination's address is computed after SP is incremented (SDM Vol. 2 POP).
      if (size === W) return (c) => {
        const spLo = c.lo[4], spHi = c.hi[4];
        const v = c.peekW(0), h = c.th;
        c.spAdd(W);
        try { d.set(c, v, h); } catch (e) { c.lo[4] = spLo; c.hi[4] = spHi; throw e; }
      };
      if (size === 2) return (c) => {
        const spLo = c.lo[4], spHi = c.hi[4];
        const v = c.peek16(0);
        c.spAdd(2);
        try { d.set(c, v, 0); } catch (e) { c.lo[4] = spLo; c.hi[4] = spHi; throw e; }
      };
      throw new Unsupported(`pop of ${size} bytes`);
    }
    case Mnemonic.Leave: {
      if (ins.code === Code.Leavew) throw new Unsupported("16-bit LEAVE"); // iced reports LEAVE's SP increment as 0
      return (c) => {
        const spLo = c.lo[4], spHi = c.hi[4];
        c.lo[4] = c.lo[5]; c.hi[4] = c.hi[5];
        let v: number, h: number;
        try { v = c.peekW(0); h = c.th; } catch (e) { c.lo[4] = spLo; c.hi[4] = spHi; throw e; }
        c.spAdd(W);
        c.lo[5] = v; c.hi[5] = h;
      };
    }
    case Mnemonic.Call: case Mnemonic.Jmp: {
      const call = m === Mnemonic.Call;
      if (ins.isCallFar || ins.isJmpFar || ins.isCallFarIndirect || ins.isJmpFarIndirect) throw new Unsupported("far CALL/JMP");
      const k = ins.op0Kind;
      if (k === OpKind.NearBranch64 || k === OpKind.NearBranch32) {
        const [tl, th] = nearTarget(ins, bits);
        if (bits === 64 && !isCanonical(tl, th)) return (c) => c.checkTarget(tl, th);
        if (call) return (c) => { c.pushW(c.ripLo, c.ripHi); c.ripLo = tl; c.ripHi = th; };
        return (c) => { c.ripLo = tl; c.ripHi = th; };
      }
      if (k === OpKind.NearBranch16) throw new Unsupported("16-bit near branch");
      if (operandSize(ins, 0) !== W) throw new Unsupported("indirect branch of another size");
      const s = operand(ins, 0, bits, W);
      if (call) return (c) => {
        const tl = s.get(c), th = c.th; // read with the old SP
        c.checkTarget(tl, th);          // #GP(0) on a non-canonical target, before the push
        c.pushW(c.ripLo, c.ripHi);
        c.jumpTo(tl, th);
      };
      return (c) => { const tl = s.get(c); c.jumpTo(tl, c.th); };
    }
    case Mnemonic.Ret: {
      if (ins.isCallFar) throw new Unsupported("far RET");
      const imm = ins.opCount === 1 && ins.op0Kind === OpKind.Immediate16 ? ins.immediate16 : 0;
      if (ins.stackPointerIncrement - imm !== W) throw new Unsupported("16-bit RET");
      return bits === 64 ? ret64(8 + imm) : retGeneric(W + imm);
    }
    default:
      break;
  }
  if (ins.isJccShortOrNear) {
    const cc = ins.conditionCode - 1;
    const [tl, th] = nearTarget(ins, bits);
    // a taken branch to a non-canonical target raises #GP(0) at the Jcc (SDM Vol. 2 Jcc, 64-bit mode)
    if (bits === 64 && !isCanonical(tl, th)) return (c: Cpu) => { if (testCondition(cc, c.flags)) c.checkTarget(tl, th); };
    return (c: Cpu) => { if (testCondition(cc, c.flags)) { c.ripLo = tl; c.ripHi = th; } };
  }
  return undefined;
}

/**
 * A near branch's target as int32 halves. (Kept free of a phi between iced's 64-bit BigInt
 * and a converted one: Node 20's TurboFan crashes lowering such a phi to Word64.)
 */
function nearTarget(ins: Instruction, bits: number): [number, number] {
  if (bits === 64) {
    const t = ins.nearBranch64;
    return [loOf(t), hiOf(t)];
  }
  return [ins.nearBranch32 | 0, 0];
}

/** Near RET popping `n` bytes (the return address's W and imm16) in either mode: the reference ret64 is checked against. */
export function retGeneric(n: number): Exec {
  return (c) => {
    const tl = c.peekW(0), th = c.th;
    c.jumpTo(tl, th);
    c.spAdd(n);
  };
}

/**
 * 64-bit near RET (imm16 bytes more popped): the generic closure's peekW(0), jumpTo and spAdd
 * written out for 64-bit mode (measured ≈ 210 host instructions a RET through the three
 * calls, each re-testing the CPU's mode). The same order and scratch: the 8-byte read at RSP
 * (a stack access: its fault first, c.th = the high half read), #GP(0) for a non-canonical
 * target before RSP moves, then RSP += n (the carry into the high half; n < 2^17).
 */
export function ret64(n: number): Exec {
  return (c) => { popRet64(c, n); };
}

/** What ret64's executor does (also the return of a 64-bit host function: decoder.ts hostExec). */
export function popRet64(c: Cpu, n: number): void {
  const sl = c.lo[4], sh = c.hi[4], mem = c.mem;
  const tl = mem.read64(sl, sh, true), th = mem.rhi;
  c.th = th;
  if (!isCanonical(tl, th)) c.checkTarget(tl, th);
  c.ripLo = tl; c.ripHi = th;
  const s = (sl >>> 0) + n;
  c.lo[4] = s | 0;
  if (s >= 4294967296) c.hi[4] = (sh + 1) | 0;
}
