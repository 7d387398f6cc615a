import { gasText, hexBytes } from "../report/gas.js";

export { hexBytes };

/**
 * One instruction at `at` in GAS syntax, objdump style: "0xffffffff90000000: e8 00 00 00 00
 * call 0xffffffff90000005".
 */
export function disassembleAt(bits: 32 | 64, at: bigint, bytes: readonly number[]): string {
  return `0x${at.toString(16)}: ${hexBytes(bytes)}   ${gasText(bits, at, bytes)}`;
}
