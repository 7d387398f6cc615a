import { PT_REGS_32, PT_REGS_64, SIZEOF_PT_REGS_32, SIZEOF_PT_REGS_64 } from "../kernel/pt-regs.js";

/**
 * The words of the frames a diagram names (spec/kernel.md §1–2), low address first.
 * - IDT 64-bit: RIP, CS, RFLAGS, RSP, SS (SDM Vol. 3A §6.14.2);
 * - IDT 32-bit, same privilege: EIP, CS, EFLAGS (§6.12.1; no SS:ESP);
 * - FRED: error code, RIP, CS, RFLAGS, RSP, SS, event data, reserved (64 bytes).
 */
export function hardwareFrame(bits: 32 | 64, frame: "idt" | "fred"): readonly string[] {
  if (frame === "fred") return ["error code", "RIP", "CS", "RFLAGS", "RSP", "SS", "event data", "reserved"];
  return bits === 64 ? ["RIP", "CS", "RFLAGS", "RSP", "SS"] : ["EIP", "CS", "EFLAGS"];
}

/** The frame a return instruction reads, from the stack pointer it runs with. */
export function returnFrame(mnemonic: string, bits: 32 | 64): readonly string[] {
  switch (mnemonic) {
    case "erets": case "eretu": return hardwareFrame(64, "fred");
    case "iretq": return ["RIP", "CS", "RFLAGS", "RSP", "SS"];
    default: return bits === 64 ? ["RIP", "CS", "RFLAGS", "RSP", "SS"] : ["EIP", "CS", "EFLAGS"];
  }
}

/** struct pt_regs fields by word index (spec §2), and its size in words. */
export function ptRegsFields(bits: 32 | 64): { readonly names: readonly string[]; readonly words: number } {
  const table: Record<string, number> = bits === 64 ? PT_REGS_64 : PT_REGS_32;
  const w = bits === 64 ? 8 : 4;
  const names: string[] = [];
  for (const [f, off] of Object.entries(table)) names[off / w] = f;
  return { names, words: (bits === 64 ? SIZEOF_PT_REGS_64 : SIZEOF_PT_REGS_32) / w };
}

/** pt_regs fields holding the interrupted context's return state (what IRET/ERETS gets). */
export const RETURN_FIELDS: readonly string[] = ["ip", "cs", "flags", "sp", "ss"];

/** Which pt_regs field a hardware-frame word becomes. */
export function fieldOfHardwareWord(name: string): string | undefined {
  return ({ "error code": "orig_ax", RIP: "ip", EIP: "ip", CS: "cs", RFLAGS: "flags", EFLAGS: "flags", RSP: "sp", SS: "ss" } as Record<string, string>)[name];
}
