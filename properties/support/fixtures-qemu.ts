// Reading and replaying the QEMU system-emulation recordings in fixtures/qemu (made by the
// bare-metal images fixtures/tools/qemu-i386.asm and qemu-x86_64.asm; see
// fixtures/README.md, part 2).
import { readFileSync } from "node:fs";
import { F, linuxGdt32, linuxGdt64, Machine, Perm, Vec } from "../../src/machine/index.js";

/** One recorded case (both architectures, field names normalized to sp/flags/h_sp). */
export interface QemuCase {
  readonly case: string;
  /** The vector whose handler ran. */
  readonly vector: number;
  readonly site: bigint;
  readonly cs: number;
  readonly ss: number;
  readonly sp: bigint;
  readonly flags: number;
  /** 16 bytes at `site`. */
  readonly code: string;
  /** 32 (i386) or 64 (x86_64) bytes at `sp` before the instruction (hand-built IRET frames). */
  readonly mem: string;
  /** SP and SS on entry to the handler. */
  readonly h_sp: bigint;
  readonly h_ss: number;
  /** CR2 in the handler (x86_64 only). */
  readonly cr2: bigint | undefined;
  /** 32 / 64 bytes at `h_sp` on entry to the handler: the frame, then what lay above it. */
  readonly frame: string;
  /** The general registers in the handler, iced order (index 4 = SP). */
  readonly regs: readonly bigint[];
}

export interface QemuTool { readonly qemu: string; readonly machine: string; readonly assembler: string; readonly image: string }

export interface QemuRecording { readonly bits: 32 | 64; readonly tool: QemuTool | undefined; readonly cases: QemuCase[] }

const big = (h: unknown): bigint => BigInt(`0x${String(h)}`);

export function readQemuRecording(path: string, bits: 32 | 64): QemuRecording {
  let tool: QemuTool | undefined;
  const cases: QemuCase[] = [];
  for (const line of readFileSync(path, "utf8").split("\n")) {
    if (line.length === 0) continue;
    const v: unknown = JSON.parse(line);
    if (typeof v !== "object" || v === null) throw new Error(`not an object: ${line.slice(0, 80)}`);
    const o = v as Record<string, unknown>;
    if (o.tool === true) { tool = v as QemuTool; continue; }
    const p = bits === 64 ? { sp: "rsp", flags: "rflags", h_sp: "h_rsp" } : { sp: "esp", flags: "eflags", h_sp: "h_esp" };
    cases.push({
      case: String(o.case), vector: Number(big(o.vector)), site: big(o.site), cs: Number(big(o.cs)), ss: Number(big(o.ss)),
      sp: big(o[p.sp]), flags: Number(big(o[p.flags])), code: String(o.code), mem: String(o.mem),
      h_sp: big(o[p.h_sp]), h_ss: Number(big(o.h_ss)), cr2: o.cr2 === undefined ? undefined : big(o.cr2),
      frame: String(o.frame), regs: (o.regs as unknown[]).map(big),
    });
  }
  return { bits, tool, cases };
}

const bytesOf = (h: string): Uint8Array => Uint8Array.from(Buffer.from(h, "hex"));
const hx = (n: bigint | number): string => n.toString(16);

/** The images' layout (constants in fixtures/tools/qemu-*.asm). */
export const IMAGE = {
  /** The image and all its stacks: 0x100000–0x1fffff, flat, identity-mapped, user-accessible. */
  base: 0x100000n, size: 0x100000,
  /** TSS: ESP0/RSP0, SS0 (i386), IST1 (x86_64). */
  sp0: 0x184000n, ss0: 0x68, ist1: 0x185000n,
} as const;

/** Where the machine's handlers live: one `hlt` per vector, 16 bytes apart. */
const HANDLERS = 0x300000n;

/** Vectors that push an error code. */
const ERROR_CODE = new Set<number>([Vec.DF, Vec.TS, Vec.NP, Vec.SS, Vec.GP, Vec.PF, Vec.AC]);

/** The frame's length: [error code,] IP CS FLAGS, then SP SS (always on 64-bit; on a privilege change on 32-bit). */
export function frameLength(bits: 32 | 64, c: QemuCase): number {
  const w = bits / 8;
  const ec = ERROR_CODE.has(c.vector) ? w : 0;
  if (bits === 64) return ec + 40;
  const f = bytesOf(c.frame);
  const savedCs = f[ec + 4] | (f[ec + 5] << 8);
  return ec + 12 + ((savedCs & 3) !== 0 ? 8 : 0);
}

export interface QemuReplay {
  /** Differences from the recording; [] = agrees (up to rfOnly). */
  readonly diffs: string[];
  /**
   * The known difference, kept out of `diffs` and counted instead: the machine saved
   * RFLAGS.RF = 1 in a fault's frame (SDM Vol. 3A §18.3.1.1) where QEMU saved RF = 0;
   * the frames are otherwise byte-identical.
   */
  readonly rfOnly: boolean;
}

/**
 * A machine configured like the image. i386: Linux's selectors 0x60/0x68/0x73/0x7b; x86-64:
 * 0x08/0x10/0x18/0x23/0x2b/0x33. The TSS descriptor is left out of the GDT, where it is as
 * unusable for CS or SS as a TSS descriptor is. Gates: 0–31 interrupt gates DPL 0, 3 and
 * 0x80 DPL 3, 0x81 DPL 0, 0x82 and the rest absent (all-zero entries in the image); on
 * x86-64 the `_ist` cases put vector 3 on IST1. The TSS holds SS0:ESP0 / RSP0 and IST1.
 */
export class QemuReplayer {
  private readonly m: Machine;
  private readonly base: ReturnType<Machine["snapshot"]>;

  constructor(readonly bits: 32 | 64) {
    const m = new Machine({ bits });
    m.map(IMAGE.base, IMAGE.size, Perm.R | Perm.W | Perm.X | Perm.U);
    m.map(HANDLERS, 0x1000, Perm.R | Perm.X);
    m.load(HANDLERS, new Uint8Array(0x1000).fill(0xf4));
    this.m = m;
    this.setGates(false);
    m.cpu.gdt = bits === 64 ? linuxGdt64() : linuxGdt32();
    m.cpu.tss.sp[0] = IMAGE.sp0;
    if (bits === 32) m.cpu.tss.ss[0] = IMAGE.ss0;
    else m.cpu.tss.ist[1] = IMAGE.ist1;
    this.base = m.snapshot();
  }

  private setGates(ist3: boolean): void {
    for (const v of [...Array.from({ length: 32 }, (_, i) => i), 0x80, 0x81]) {
      this.m.setGate(v, {
        handler: HANDLERS + BigInt(16 * (v < 32 ? v : v - 0x80 + 32)), dpl: v === 3 || v === 0x80 ? 3 : 0,
        type: "interrupt", ist: v === 3 && ist3 ? 1 : 0,
      });
    }
  }

  private vectorAt(ip: bigint): number | undefined {
    const k = Number(ip - 1n - HANDLERS) / 16;
    if (!Number.isInteger(k) || k < 0 || k >= 34) return undefined;
    return k < 32 ? k : k - 32 + 0x80;
  }

  replay(c: QemuCase): QemuReplay {
    const m = this.m, bits = this.bits, w = bits / 8;
    m.restore(this.base);
    this.setGates(bits === 64 && c.case.endsWith("_ist"));
    m.load(c.site, bytesOf(c.code));
    m.load(c.sp, bytesOf(c.mem));
    const cpu = m.cpu;
    const n = bits === 64 ? 16 : 8;
    for (let i = 0; i < n; i++) if (i !== 4) cpu.setReg(i, c.regs[i]);
    cpu.sp = c.sp;
    cpu.setCs(c.cs);
    cpu.ss = c.ss;
    cpu.flags = c.flags | 0x2;
    cpu.rip = c.site;
    cpu.refetch();
    const r = m.run({ maxSteps: 8 });
    const diffs: string[] = [];
    if (r.reason !== "hlt") {
      diffs.push(`machine stopped with ${r.reason}${r.detail === undefined ? "" : ` (${r.detail})`} at 0x${hx(cpu.rip)}`);
      return { diffs, rfOnly: false };
    }
    const vec = this.vectorAt(cpu.rip);
    if (vec !== c.vector) diffs.push(`vector: machine ${vec === undefined ? `? (halted at 0x${hx(cpu.rip)})` : hx(vec)}, QEMU ${hx(c.vector)}`);
    if (cpu.sp !== c.h_sp) diffs.push(`handler SP: machine ${hx(cpu.sp)}, QEMU ${hx(c.h_sp)}`);
    if (cpu.ss !== c.h_ss) diffs.push(`handler SS: machine ${hx(cpu.ss)}, QEMU ${hx(c.h_ss)}`);
    if (cpu.cpl !== 0) diffs.push(`handler CPL: machine ${cpu.cpl}, QEMU 0`);
    if ((cpu.flags & (F.IF | F.TF)) !== 0) diffs.push(`handler flags ${hx(cpu.flags)}: IF/TF not cleared`);
    if (c.vector === Vec.PF && c.cr2 !== undefined && cpu.cr2 !== c.cr2) diffs.push(`CR2: machine ${hx(cpu.cr2)}, QEMU ${hx(c.cr2)}`);
    const len = frameLength(bits, c);
    const want = c.frame.slice(0, 2 * len);
    const got = Buffer.alloc(len);
    const hLo = Number(c.h_sp & 0xffffffffn), hHi = Number(c.h_sp >> 32n);
    for (let k = 0; k < len; k++) got[k] = m.mem.read8((hLo + k) | 0, hHi);
    const frame = got.toString("hex");
    // The saved flags sit after the error code (if any), IP and CS; RF is bit 16.
    const flagsAt = (ERROR_CODE.has(c.vector) ? w : 0) + 2 * w;
    let rfOnly = false;
    if ((got[flagsAt + 2] & 1) === 1) {
      const rf = Buffer.from(got);
      rf[flagsAt + 2] &= ~1;
      rfOnly = rf.toString("hex") === want && frame !== want;
    }
    if (frame !== want && !rfOnly) diffs.push(`frame at ${hx(c.h_sp)}: machine ${frame}, QEMU ${want}`);
    for (let i = 0; i < n; i++) {
      if (i === 4) continue;
      if (cpu.reg(i) !== c.regs[i]) diffs.push(`reg ${i}: machine ${hx(cpu.reg(i))}, QEMU ${hx(c.regs[i])}`);
    }
    return { diffs, rfOnly };
  }
}

export function describeQemuCase(c: QemuCase): string {
  return `${c.case} at ${hx(c.site)} (CS ${hx(c.cs)}, SS ${hx(c.ss)}, SP ${hx(c.sp)}, flags ${hx(c.flags)}, code ${c.code.slice(0, 16)}, stack ${c.mem.slice(0, 80)})`;
}
