import { Decoder, DecoderOptions, Formatter, FormatterSyntax } from "iced-x86";

/** `bytes` as "e8 00 00 00 00". */
export const hexBytes = (bytes: readonly number[]): string => bytes.map((b) => b.toString(16).padStart(2, "0")).join(" ");

/**
 * One instruction at `at` in GAS syntax, objdump style: "0xffffffff90000000: e8 00 00 00 00
 * call 0xffffffff90000005". The iced objects are freed before returning.
 */
export function disassembleAt(bits: 32 | 64, at: bigint, bytes: readonly number[]): string {
  const decoder = new Decoder(bits, Uint8Array.from(bytes), DecoderOptions.None);
  const formatter = new Formatter(FormatterSyntax.Gas);
  decoder.ip = at;
  const insn = decoder.decode();
  try {
    formatter.uppercaseHex = false;
    formatter.branchLeadingZeros = false;
    return `0x${at.toString(16)}: ${hexBytes(bytes)}   ${formatter.format(insn)}`;
  } finally {
    insn.free();
    formatter.free();
    decoder.free();
  }
}
