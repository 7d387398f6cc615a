// Reading and replaying the QEMU system-emulation recordings in fixtures/qemu (made by the
// bare-metal images fixtures/tools/qemu-i386.asm and qemu-x86_64.asm; see
// fixtures/README.md, part 2).
import { readFileSync } from "node:fs";
import { Decoder, DecoderOptions } from "iced-x86";
import {
  type Cpu, type EventKind, F, type Gdt, hasErrorCode, IDT_DELIVERY, linuxGdt32, linuxGdt64, Machine, Perm, Vec,
} from "../../src/machine/index.js";

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
  /** CR2 in the handler (the image zeroes CR2 before each case). */
  readonly cr2: bigint | undefined;
  /**
   * Nested cases: the first event's gate (`chainVec`) pointed at a chain stub at `chain`
   * (32 bytes `chainCode`), which raises the second event; the gate is restored on the way.
   */
  readonly chainVec: number | undefined;
  readonly chain: bigint | undefined;
  readonly chainCode: string | undefined;
  /**
   * The bytes at `h_sp` on entry to the handler (32/64 in older recordings, 96/128 now): the
   * frame(s), then what lay above. The image zeroes the case stacks before each case, so
   * every byte of it is determined and compared.
   */
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
      chainVec: o.chain_vec === undefined ? undefined : Number(big(o.chain_vec)),
      chain: o.chain === undefined ? undefined : big(o.chain),
      chainCode: o.chain_code === undefined ? undefined : String(o.chain_code),
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
  /** Test pages (4 KiB pages in 0x200000-0x3fffff): not present, read-only (user), supervisor-only. */
  npPage: 0x3f0000n, roPage: 0x3f1000n, supPage: 0x3f2000n,
  /** The local APIC page, where the image sends itself an NMI (ICR low at +0x300). */
  apic: { 32: 0xfee00000n, 64: 0x3fe00000n },
} as const;

/**
 * What a case kind changes in the image before it runs (the `setup` argument of its case
 * macro in fixtures/tools/qemu-*.asm): gates marked not present, IST slots, TSS fields.
 */
interface CaseEnv {
  readonly notPresent?: readonly number[];
  readonly ist?: Readonly<Record<number, number>>;
  readonly ss1?: number;
  readonly sp0?: bigint;
  /** The image's data word the case's first instruction reads (its memory operand), e.g. `sel_ss_np`. */
  readonly operandWord?: number;
}

const ENV: Record<32 | 64, Readonly<Record<string, CaseEnv>>> = {
  32: {
    r0_int3_np3: { notPresent: [3] }, r3_int3_np3: { notPresent: [3] }, r0_ud2_np6: { notPresent: [6] },
    r0_gp_np13_df: { notPresent: [13] }, r3_cli_np13_df: { notPresent: [13] }, r0_pf_np14_df: { notPresent: [14] },
    r3_int83_ts_ss1_null: { ss1: 0 }, r3_int83_ts_ss1_rpl: { ss1: 0x93 }, r3_int83_ts_ss1_dpl: { ss1: 0x69 },
    r3_int83_ts_ss1_code: { ss1: 0x89 }, r3_int83_ss1_np: { ss1: 0x99 }, r3_int83_pf_esp1: { ss1: 0x91 },
    r0_mov_ss_np: { operandWord: 0xb0 },
  },
  64: {
    r0_int3_ist: { ist: { 3: 1 } }, r3_int3_ist: { ist: { 3: 1 } },
    r0_int3_np3: { notPresent: [3] }, r3_int3_np3: { notPresent: [3] }, r0_ud2_np6: { notPresent: [6] },
    r0_gp_np13_df: { notPresent: [13] }, r3_cli_np13_df: { notPresent: [13] }, r0_pf_np14_df: { notPresent: [14] },
    r0_int3_pf_pf_df: { ist: { 8: 1 } }, r0_mov_pf_pf_df: { ist: { 8: 1 } }, r0_push_noncanon_df: { ist: { 8: 1 } },
    r3_int3_rsp0_noncanon_df: { ist: { 8: 1 }, sp0: 0x8000000000000000n },
    r0_mov_ss_np: { operandWord: 0x58 },
  },
};

/** The image's extra GDT entries (the TSS descriptor is left out: unusable as CS or SS). */
function imageGdt(bits: 32 | 64): Gdt {
  const g = bits === 64 ? linuxGdt64() : linuxGdt32();
  if (bits === 32) {
    g[0x88 >> 3] = { kind: "code", dpl: 1, present: true };
    g[0x90 >> 3] = { kind: "data", dpl: 1, present: true, writable: true };
    g[0x98 >> 3] = { kind: "data", dpl: 1, present: false, writable: true };
    g[0xa0 >> 3] = { kind: "data", dpl: 3, present: false, writable: true };
    // 0xa8 has a limit of 0x180fff in the image; the machine does not model segment limits.
    g[0xa8 >> 3] = { kind: "data", dpl: 0, present: true, writable: true };
    g[0xb0 >> 3] = { kind: "data", dpl: 0, present: false, writable: true };
  } else {
    g[0x50 >> 3] = { kind: "data", dpl: 3, present: false, writable: true };
    g[0x58 >> 3] = { kind: "data", dpl: 0, present: false, writable: true };
  }
  return g;
}

/** Where the machine's handlers live: one `hlt` per vector, 16 bytes apart. */
const HANDLERS = 0x300000n;


/** Vectors in the order of the handler slots; 0x82 and the rest have no gate. */
const SLOTS: readonly number[] = [...Array.from({ length: 32 }, (_, i) => i), 0x80, 0x81, 0x83];

/** One event the machine delivered while replaying: where its frame went. */
interface Delivered { readonly vector: number; readonly kind: EventKind; readonly sp: bigint; readonly errorCode: boolean }

export interface QemuReplay {
  /** Differences from the recording; [] = agrees (up to rfOnly). */
  readonly diffs: string[];
  /**
   * The known difference, kept out of `diffs` and counted instead: the machine saved
   * RFLAGS.RF = 1 in a fault's frame (SDM Vol. 3A §18.3.1.1) where QEMU saved RF = 0;
   * the bytes are otherwise identical.
   */
  readonly rfOnly: boolean;
  /** Whether a frame the machine wrote for a fault lies in the compared bytes (so its RF shows). */
  readonly faultFrame: boolean;
  /** The events the machine delivered, in order ("#BP", "#PF", ...), for reports. */
  readonly events: readonly number[];
}

/**
 * A machine configured like the image. i386: Linux's selectors 0x60/0x68/0x73/0x7b plus
 * 0x88 (code, DPL 1), 0x90 (data, DPL 1), 0x98 and 0xa0 (not present), 0xa8; x86-64:
 * 0x08/0x10/0x18/0x23/0x2b/0x33 plus 0x53 (not present). Gates: 0–31 interrupt gates DPL
 * 0, 3 and 0x80 DPL 3, 0x81 DPL 0, 0x83 DPL 3 to the DPL-1 segment 0x88 (i386), 0x82 and
 * the rest absent; per kind, ENV marks gates not present, sets IST slots and TSS fields.
 * The TSS holds SS0:ESP0 / RSP0 and IST1. Memory: the image (1 MiB, user RWX), the test
 * pages as the image's page tables have them (not present, read-only, supervisor-only)
 * and the APIC page as plain memory: a write to its ICR is the NMI self-IPI, which the
 * replayer delivers when the CPU waits for it (HLT, or `jmp $` at CPL 3).
 */
export class QemuReplayer {
  private readonly m: Machine;
  private readonly base: ReturnType<Machine["snapshot"]>;
  private readonly icr: bigint;
  private nmiPending = false;
  private delivered: Delivered[] = [];
  /** The gate a chain stub borrows for the first delivery through it. */
  private chain: { vector: number; used: boolean } | undefined;

  constructor(readonly bits: 32 | 64) {
    const m = new Machine({ bits });
    const rwxu = Perm.R | Perm.W | Perm.X | Perm.U;
    m.map(IMAGE.base, IMAGE.size, rwxu);
    m.map(HANDLERS, 0x1000, Perm.R | Perm.X);
    m.load(HANDLERS, new Uint8Array(0x1000).fill(0xf4));
    m.map(IMAGE.npPage - 0x1000n, 0x1000, rwxu); // the page below NP_PAGE, for split accesses
    m.map(IMAGE.roPage, 0x1000, Perm.R | Perm.X | Perm.U);
    m.map(IMAGE.supPage, 0x1000, Perm.R | Perm.W | Perm.X);
    m.map(IMAGE.apic[bits], 0x1000, Perm.R | Perm.W | Perm.U);
    this.icr = IMAGE.apic[bits] + 0x300n;
    m.onWrite((addr) => { if (addr === this.icr) this.nmiPending = true; });
    m.onInstruction((_c, _addr, insn) => (this.nmiPending && insn.bytes[0] === 0xeb && insn.bytes[1] === 0xfe ? "stop" : undefined));
    // The IDT delivery itself, noting where each frame went (for the RF comparison) and
    // giving a borrowed gate back after its first use.
    m.cpu.delivery = {
      name: "idt",
      deliver: (c: Cpu, vector, kind, errorCode, savedLo, savedHi, nested) => {
        IDT_DELIVERY.deliver(c, vector, kind, errorCode, savedLo, savedHi, nested);
        const pushed = errorCode !== undefined && hasErrorCode(vector) && kind !== "software" && kind !== "external";
        this.delivered.push({ vector, kind, sp: c.sp, errorCode: pushed });
        if (this.chain !== undefined && this.chain.vector === vector && !this.chain.used) {
          this.chain.used = true;
          this.setGate(vector, false, {});
        }
      },
    };
    this.m = m;
    this.base = m.snapshot();
  }

  private setGate(v: number, notPresent: boolean, env: CaseEnv, handler?: bigint): void {
    const slot = SLOTS.indexOf(v);
    this.m.setGate(v, {
      handler: handler ?? HANDLERS + BigInt(16 * slot), dpl: v === 3 || v === 0x80 || v === 0x83 ? 3 : 0,
      type: "interrupt", ist: env.ist?.[v] ?? 0, present: !notPresent,
      ...(v === 0x83 ? { selector: 0x88 } : {}),
    });
  }

  private vectorAt(ip: bigint): number | undefined {
    const k = Number(ip - 1n - HANDLERS) / 16;
    if (!Number.isInteger(k) || k < 0 || k >= SLOTS.length) return undefined;
    return SLOTS[k];
  }

  replay(c: QemuCase): QemuReplay {
    const m = this.m, bits = this.bits, w = bits / 8;
    m.restore(this.base);
    const cpu = m.cpu;
    const env = ENV[bits][c.case] ?? {};
    cpu.gdt = imageGdt(bits);
    cpu.tss.sp = [env.sp0 ?? IMAGE.sp0, 0n, 0n];
    cpu.tss.ss = bits === 32 ? [IMAGE.ss0, env.ss1 ?? 0, 0] : [0, 0, 0];
    cpu.tss.ist = [0n, bits === 64 ? IMAGE.ist1 : 0n, 0n, 0n, 0n, 0n, 0n, 0n];
    cpu.idt = [];
    for (const v of SLOTS) if (bits === 32 || v !== 0x83) this.setGate(v, env.notPresent?.includes(v) === true, env);
    this.chain = undefined;
    if (c.chainVec !== undefined && c.chain !== undefined && c.chainCode !== undefined) {
      this.setGate(c.chainVec, false, env, c.chain);
      m.load(c.chain, bytesOf(c.chainCode));
      this.chain = { vector: c.chainVec, used: false };
    }
    this.nmiPending = false;
    this.delivered = [];
    m.load(c.site, bytesOf(c.code));
    m.load(c.sp, bytesOf(c.mem));
    if (env.operandWord !== undefined) m.load(operandAddress(bits, c.site, bytesOf(c.code)), [env.operandWord & 0xff, env.operandWord >> 8]);
    const n = bits === 64 ? 16 : 8;
    for (let i = 0; i < n; i++) if (i !== 4) cpu.setReg(i, c.regs[i]);
    cpu.sp = c.sp;
    cpu.setCs(c.cs);
    cpu.ss = c.ss;
    cpu.flags = c.flags | 0x2;
    cpu.cr2 = 0n;
    cpu.rip = c.site;
    cpu.refetch();
    let r = m.run({ maxSteps: 16 });
    // An NMI the case sent itself arrives while the CPU waits (after HLT, or at `jmp $`).
    for (let k = 0; k < 3 && this.nmiPending; k++) {
      if (!(r.reason === "stopped" || (r.reason === "hlt" && this.vectorAt(cpu.rip) === undefined))) break;
      this.nmiPending = false;
      cpu.raise(Vec.NMI, "external", undefined, cpu.ripLo, cpu.ripHi);
      r = m.run({ maxSteps: 16 });
    }
    const events = this.delivered.map((d) => d.vector);
    const diffs: string[] = [];
    if (r.reason !== "hlt") {
      diffs.push(`machine stopped with ${r.reason}${r.detail === undefined ? "" : ` (${r.detail})`} at 0x${hx(cpu.rip)}`);
      return { diffs, rfOnly: false, faultFrame: false, events };
    }
    const vec = this.vectorAt(cpu.rip);
    if (vec !== c.vector) diffs.push(`vector: machine ${vec === undefined ? `? (halted at 0x${hx(cpu.rip)})` : hx(vec)}, QEMU ${hx(c.vector)}`);
    if (cpu.sp !== c.h_sp) diffs.push(`handler SP: machine ${hx(cpu.sp)}, QEMU ${hx(c.h_sp)}`);
    if (cpu.ss !== c.h_ss) diffs.push(`handler SS: machine ${hx(cpu.ss)}, QEMU ${hx(c.h_ss)}`);
    if (cpu.cpl !== 0) diffs.push(`handler CPL: machine ${cpu.cpl}, QEMU 0`);
    if ((cpu.flags & (F.IF | F.TF)) !== 0) diffs.push(`handler flags ${hx(cpu.flags)}: IF/TF not cleared`);
    if (c.cr2 !== undefined && cpu.cr2 !== c.cr2) diffs.push(`CR2: machine ${hx(cpu.cr2)}, QEMU ${hx(c.cr2)}`);
    // Every byte QEMU printed at the handler's SP: the frames, then what lay above them.
    const want = c.frame;
    const len = want.length / 2;
    const got = Buffer.alloc(len);
    const hLo = Number(c.h_sp & 0xffffffffn), hHi = Number(c.h_sp >> 32n);
    for (let k = 0; k < len; k++) got[k] = m.mem.read8((hLo + k) | 0, hHi);
    const frame = got.toString("hex");
    // RF (bit 16 of the saved flags) in each frame the machine wrote for a fault.
    const rf = Buffer.from(got);
    let faultFrame = false;
    for (const d of this.delivered) {
      if (d.kind !== "fault") continue;
      const at = Number(d.sp - c.h_sp) + (d.errorCode ? w : 0) + 2 * w + 2;
      if (at >= 0 && at < len) { rf[at] &= ~1; faultFrame = true; }
    }
    const rfOnly = frame !== want && rf.toString("hex") === want;
    if (frame !== want && !rfOnly) diffs.push(`frame at ${hx(c.h_sp)}: machine ${frame}, QEMU ${want}`);
    for (let i = 0; i < n; i++) {
      if (i === 4) continue;
      if (cpu.reg(i) !== c.regs[i]) diffs.push(`reg ${i}: machine ${hx(cpu.reg(i))}, QEMU ${hx(c.regs[i])}`);
    }
    return { diffs, rfOnly, faultFrame, events };
  }
}

/** The address of the memory operand of the instruction at `site` (absolute or RIP-relative). */
function operandAddress(bits: 32 | 64, site: bigint, code: Uint8Array): bigint {
  const d = new Decoder(bits, code, DecoderOptions.None);
  d.ip = site;
  const ins = d.decode();
  try {
    return ins.isIpRelMemoryOperand ? ins.ipRelMemoryAddress : ins.memoryDisplacement;
  } finally {
    ins.free();
    d.free();
  }
}

export function describeQemuCase(c: QemuCase): string {
  return `${c.case} at ${hx(c.site)} (CS ${hx(c.cs)}, SS ${hx(c.ss)}, SP ${hx(c.sp)}, flags ${hx(c.flags)}, code ${c.code.slice(0, 16)}, stack ${c.mem.slice(0, 80)})`;
}
