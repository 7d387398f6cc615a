/** RFLAGS bits, parity, and condition-code evaluation (SDM Vol. 1 §3.4.3, Appendix B). */

export const F = {
  CF: 0x1, PF: 0x4, AF: 0x10, ZF: 0x40, SF: 0x80, TF: 0x100, IF: 0x200, DF: 0x400, OF: 0x800,
  IOPL: 0x3000, NT: 0x4000, RF: 0x10000, VM: 0x20000, AC: 0x40000, VIF: 0x80000, VIP: 0x100000, ID: 0x200000,
} as const;

/** The six arithmetic status flags. */
export const STATUS = F.CF | F.PF | F.AF | F.ZF | F.SF | F.OF;
/** Bit 1 of RFLAGS always reads 1. */
export const FIXED1 = 0x2;
/** Bits software can ever see set in RFLAGS. */
export const DEFINED = STATUS | F.TF | F.IF | F.DF | F.IOPL | F.NT | F.RF | F.VM | F.AC | F.VIF | F.VIP | F.ID | FIXED1;

/** PF value (0 or F.PF) for the low byte of a result: set when its bit count is even. */
export const PARITY = new Uint8Array(256);
for (let i = 0; i < 256; i++) {
  let n = 0;
  for (let b = i; b; b >>= 1) n += b & 1;
  PARITY[i] = n & 1 ? 0 : F.PF;
}

/**
 * Condition codes in x86 encoding order (the low nibble of Jcc/SETcc/CMOVcc):
 * 0 O, 1 NO, 2 B, 3 AE, 4 E, 5 NE, 6 BE, 7 A, 8 S, 9 NS, A P, B NP, C L, D GE, E LE, F G.
 */
export function testCondition(cc: number, f: number): boolean {
  let r: boolean;
  switch (cc >> 1) {
    case 0: r = (f & F.OF) !== 0; break;
    case 1: r = (f & F.CF) !== 0; break;
    case 2: r = (f & F.ZF) !== 0; break;
    case 3: r = (f & (F.CF | F.ZF)) !== 0; break;
    case 4: r = (f & F.SF) !== 0; break;
    case 5: r = (f & F.PF) !== 0; break;
    case 6: r = ((f & F.SF) !== 0) !== ((f & F.OF) !== 0); break;
    default: r = (f & F.ZF) !== 0 || ((f & F.SF) !== 0) !== ((f & F.OF) !== 0); break;
  }
  return (cc & 1) === 0 ? r : !r;
}

/** The flags each condition reads (for coverage and for test generation). */
export function conditionFlags(cc: number): number {
  return [F.OF, F.CF, F.ZF, F.CF | F.ZF, F.SF, F.PF, F.SF | F.OF, F.ZF | F.SF | F.OF][cc >> 1];
}

export const CONDITION_NAMES = ["o", "no", "b", "ae", "e", "ne", "be", "a", "s", "ns", "p", "np", "l", "ge", "le", "g"];
