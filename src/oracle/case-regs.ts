/**
 * A case's registers into a CPU's int32 halves, through a 64-bit typed-array slot (the
 * halves without BigInt arithmetic; modulo 2^64, as the slot stores a BigInt). Every GPR
 * but rSP (layCase sets it from the case's stack offset): rax..r15 on 64-bit, eax..edi with
 * high halves 0 on 32-bit; fewer when the case gives fewer.
 */

const SLOT = new ArrayBuffer(8), S64 = new BigUint64Array(SLOT), S32 = new Int32Array(SLOT);

/**
 * setCaseRegsLoop, unrolled when the case gives every register (a loop over typed arrays
 * reloads their length and data pointer per access in Node 20's V8: about twice the cost).
 */
export function setCaseRegs(lo: Int32Array, hi: Int32Array, regs: readonly bigint[], wide: boolean): void {
  if (wide && regs.length >= 16) setRegs64(lo, hi, regs);
  else if (!wide && regs.length >= 8) setRegs32(lo, hi, regs);
  else setCaseRegsLoop(lo, hi, regs, wide);
}

/** The general path: register by register, in order. */
export function setCaseRegsLoop(lo: Int32Array, hi: Int32Array, regs: readonly bigint[], wide: boolean): void {
  const n = Math.min(wide ? 16 : 8, regs.length);
  for (let i = 0; i < n; i++) {
    if (i === 4) continue;
    S64[0] = regs[i];
    lo[i] = S32[0];
    hi[i] = wide ? S32[1] : 0;
  }
}

// (written out: helper calls would stay calls past the caller's inlining budget)
function setRegs64(lo: Int32Array, hi: Int32Array, r: readonly bigint[]): void {
  const S = S64, H = S32;
  S[0] = r[0]; lo[0] = H[0]; hi[0] = H[1]; S[0] = r[1]; lo[1] = H[0]; hi[1] = H[1];
  S[0] = r[2]; lo[2] = H[0]; hi[2] = H[1]; S[0] = r[3]; lo[3] = H[0]; hi[3] = H[1];
  S[0] = r[5]; lo[5] = H[0]; hi[5] = H[1]; S[0] = r[6]; lo[6] = H[0]; hi[6] = H[1];
  S[0] = r[7]; lo[7] = H[0]; hi[7] = H[1]; S[0] = r[8]; lo[8] = H[0]; hi[8] = H[1];
  S[0] = r[9]; lo[9] = H[0]; hi[9] = H[1]; S[0] = r[10]; lo[10] = H[0]; hi[10] = H[1];
  S[0] = r[11]; lo[11] = H[0]; hi[11] = H[1]; S[0] = r[12]; lo[12] = H[0]; hi[12] = H[1];
  S[0] = r[13]; lo[13] = H[0]; hi[13] = H[1]; S[0] = r[14]; lo[14] = H[0]; hi[14] = H[1];
  S[0] = r[15]; lo[15] = H[0]; hi[15] = H[1];
}

function setRegs32(lo: Int32Array, hi: Int32Array, r: readonly bigint[]): void {
  const S = S64, H = S32;
  S[0] = r[0]; lo[0] = H[0]; hi[0] = 0; S[0] = r[1]; lo[1] = H[0]; hi[1] = 0;
  S[0] = r[2]; lo[2] = H[0]; hi[2] = 0; S[0] = r[3]; lo[3] = H[0]; hi[3] = 0;
  S[0] = r[5]; lo[5] = H[0]; hi[5] = 0; S[0] = r[6]; lo[6] = H[0]; hi[6] = 0;
  S[0] = r[7]; lo[7] = H[0]; hi[7] = 0;
}
