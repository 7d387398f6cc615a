import { Decoder, DecoderOptions, Formatter, FormatterSyntax } from "iced-x86";

/** `bytes` as "e8 00 00 00 00". */
export const hexBytes = (bytes: readonly number[]): string => bytes.map((b) => b.toString(16).padStart(2, "0")).join(" ");

/** `x` as 0x-prefixed lowercase hex. */
export const hex = (x: bigint | number): string => `0x${x.toString(16)}`;

/** `x` as a fixed-width hex word (16 digits on 64-bit, 8 on 32-bit), no prefix. */
export const hexWord = (x: bigint, bits: 32 | 64): string => BigInt.asUintN(bits, x).toString(16).padStart(bits / 4, "0");

/**
 * One instruction's text in GAS syntax (objdump style: lowercase hex, no leading zeros in
 * branch targets). The iced objects are freed before returning.
 */
export function gasText(bits: 32 | 64, at: bigint, bytes: readonly number[]): string {
  const decoder = new Decoder(bits, Uint8Array.from(bytes), DecoderOptions.None);
  const formatter = new Formatter(FormatterSyntax.Gas);
  decoder.ip = at;
  const insn = decoder.decode();
  try {
    formatter.uppercaseHex = false;
    formatter.branchLeadingZeros = false;
    return insn.isInvalid ? "(bad)" : formatter.format(insn);
  } finally {
    insn.free();
    formatter.free();
    decoder.free();
  }
}
