// Reading and replaying the real-CPU recordings in fixtures/cpu (made by
// fixtures/tools/usermode.c; see fixtures/README.md).
import { readFileSync } from "node:fs";
import { gunzipSync } from "node:zlib";
import { F, Machine, Perm } from "../../src/machine/index.js";

export interface RecordedState {
  readonly regs: readonly string[];
  readonly ip: string;
  readonly flags: string;
  readonly win: string;
}

export interface RecordedCase {
  readonly kind: string;
  readonly bytes: string;
  readonly target: string;
  readonly before: RecordedState;
  readonly after: RecordedState;
}

/** One case as usermode.c writes it in format 2: a fill seed and differences (see expandCase). */
interface CompactState {
  readonly regs: Readonly<Record<string, string>>;
  readonly ip: string;
  readonly flags: string;
  readonly win: readonly (readonly [number, string])[];
}
interface CompactCase {
  readonly kind: string;
  readonly bytes: string;
  readonly target: string;
  readonly fill: string;
  readonly before: CompactState;
  readonly after: CompactState;
}

export interface RecordingHeader {
  readonly arch: "x86_64" | "i386";
  readonly seed: number;
  readonly casesPerKind: number;
  readonly code: string;
  readonly codeSize: number;
  readonly stack: string;
  readonly stackSize: number;
  readonly window: number;
  readonly flagsMask: string;
  /** 2: cases store a fill seed and differences (absent: full states, the first recordings). */
  readonly format?: number;
}

export interface ToolHeader { readonly cpu: string; readonly gcc: string; readonly seed: number; readonly cases: number }

export interface Recording {
  readonly tool: ToolHeader | undefined;
  readonly header: RecordingHeader;
  readonly cases: RecordedCase[];
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null;
}

/** mulberry32, as usermode.c's frnd(): the generator of a case's random registers and window. */
function mulberry32(seed: number): () => number {
  let s = seed | 0;
  return () => {
    s = (s + 0x6d2b79f5) | 0;
    let t = Math.imul(s ^ (s >>> 15), s | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  };
}

/** Applies a compact state's differences to full registers (hex strings) and window bytes. */
function applyState(regs: string[], win: Uint8Array, d: CompactState): RecordedState {
  for (const [i, v] of Object.entries(d.regs)) regs[Number(i)] = v;
  for (const [off, h] of d.win) win.set(Buffer.from(h, "hex"), off);
  return { regs: [...regs], ip: d.ip, flags: d.flags, win: Buffer.from(win).toString("hex") };
}

/**
 * Expands a format-2 case: the fill (registers, then the window, from mulberry32 seeded with
 * `fill`), the case's changes on top of it (before), and the instruction's changes (after).
 */
function expandCase(c: CompactCase, h: RecordingHeader): RecordedCase {
  const next = mulberry32(parseInt(c.fill, 16));
  const n = h.arch === "x86_64" ? 16 : 8;
  const regs: string[] = [];
  for (let i = 0; i < n; i++) {
    const lo = next();
    regs.push(n === 16 ? ((BigInt(next()) << 32n) | BigInt(lo)).toString(16) : lo.toString(16));
  }
  const win = new Uint8Array(2 * h.window);
  const dv = new DataView(win.buffer);
  for (let i = 0; i < win.length; i += 4) dv.setUint32(i, next(), true);
  const before = applyState(regs, win, c.before);
  const after = applyState(regs, win, c.after);
  return { kind: c.kind, bytes: c.bytes, target: c.target, before, after };
}

/** Parses JSON lines written by usermode.c (optionally preceded by regenerate.sh's tool line). */
export function parseRecording(text: string): Recording {
  let tool: ToolHeader | undefined;
  let header: RecordingHeader | undefined;
  const cases: RecordedCase[] = [];
  for (const line of text.split("\n")) {
    if (line.length === 0) continue;
    const v: unknown = JSON.parse(line);
    if (!isObject(v)) throw new Error(`not an object: ${line.slice(0, 80)}`);
    if (v.tool === true) tool = v as unknown as ToolHeader;
    else if (v.header === true) header = v as unknown as RecordingHeader;
    else if (typeof v.fill === "string") {
      if (header === undefined) throw new Error("case before the header line");
      cases.push(expandCase(v as unknown as CompactCase, header));
    } else cases.push(v as unknown as RecordedCase);
  }
  if (header === undefined) throw new Error("recording has no header line");
  return { tool, header, cases };
}

export function readRecording(path: string): Recording {
  return parseRecording(gunzipSync(readFileSync(path)).toString("utf8"));
}

const big = (h: string): bigint => BigInt(`0x${h}`);
const bytesOf = (h: string): Uint8Array => Uint8Array.from(Buffer.from(h, "hex"));
const hexOf = (b: Uint8Array): string => Buffer.from(b).toString("hex");

/** What the machine did with one case, and how it differs from the recording ([] = agrees). */
export interface ReplayResult {
  readonly diffs: string[];
}

/**
 * A machine laid out like the recorder's address space: the code buffer (all int3) and
 * the stack buffer at their recorded addresses. CPL 0 here, CPL 3 there: none of the
 * recorded instructions behave differently for the state compared (the six status flags
 * and DF; POPF's IF/IOPL differences are outside the mask, and the popped values keep
 * them constant anyway).
 */
export class Replayer {
  private readonly m: Machine;
  private readonly base: ReturnType<Machine["snapshot"]>;
  private readonly bits: 32 | 64;
  private readonly winLen: number;
  private readonly mask: number;
  private site = 0n;
  private stray: string[] = [];
  private winLo = 0n;
  private winHi = 0n;

  constructor(readonly header: RecordingHeader) {
    this.bits = header.arch === "x86_64" ? 64 : 32;
    this.winLen = header.window;
    this.mask = Number(big(header.flagsMask));
    const m = new Machine({ bits: this.bits });
    const code = big(header.code), stack = big(header.stack);
    m.map(code, header.codeSize, Perm.R | Perm.X).map(stack, header.stackSize, Perm.R | Perm.W);
    m.load(code, new Uint8Array(header.codeSize).fill(0xcc));
    // stop before the first instruction after the recorded one (the int3 the CPU trapped on)
    m.onInstruction((_c, addr) => (addr !== this.site ? "stop" : undefined));
    m.onException(() => "stop");
    m.onWrite((a, n) => {
      if (a < this.winLo || a + BigInt(n) > this.winHi) this.stray.push(`write of ${n} bytes at 0x${a.toString(16)} outside the window`);
    });
    this.m = m;
    this.base = m.snapshot();
  }

  /** The bytes the machine executes: the recorded instruction, or for int3_call the CALL it emulates. */
  static executedBytes(c: RecordedCase): Uint8Array {
    if (c.kind !== "int3_call") return bytesOf(c.bytes);
    const rel = Number(BigInt.asIntN(32, big(c.target) - (big(c.before.ip) + 5n)));
    const b = new Uint8Array(5);
    b[0] = 0xe8;
    new DataView(b.buffer).setInt32(1, rel, true);
    return b;
  }

  replay(c: RecordedCase): ReplayResult {
    const m = this.m;
    m.restore(this.base);
    const b = c.before, a = c.after;
    const sp0 = big(b.regs[4]);
    this.site = big(b.ip);
    this.winLo = sp0 - BigInt(this.winLen);
    this.winHi = sp0 + BigInt(this.winLen);
    this.stray = [];
    m.load(this.site, Replayer.executedBytes(c));
    m.load(this.winLo, bytesOf(b.win));
    const n = this.bits === 64 ? 16 : 8;
    for (let i = 0; i < n; i++) m.cpu.setReg(i, big(b.regs[i]));
    m.cpu.rip = this.site;
    // user mode always runs with IF set (and bit 1): PUSHF's image shows it
    m.cpu.flags = Number(big(b.flags)) | F.IF | 0x2;
    m.cpu.refetch();
    const r = m.run({ maxSteps: 4 });
    const diffs: string[] = [];
    if (r.reason !== "stopped" || r.steps !== 1) {
      diffs.push(`run ended with ${r.reason} after ${r.steps} steps${r.event ? ` (${r.event.name} at 0x${r.event.ip.toString(16)}${r.event.detail ? `: ${r.event.detail}` : ""})` : ""}`);
    }
    const names = this.bits === 64
      ? ["rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi", "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15"]
      : ["eax", "ecx", "edx", "ebx", "esp", "ebp", "esi", "edi"];
    for (let i = 0; i < n; i++) {
      const got = m.cpu.reg(i), want = big(a.regs[i]);
      if (got !== want) diffs.push(`${names[i]}: machine 0x${got.toString(16)}, CPU 0x${want.toString(16)}`);
    }
    if (m.cpu.rip !== big(a.ip)) diffs.push(`ip: machine 0x${m.cpu.rip.toString(16)}, CPU 0x${a.ip}`);
    const fl = m.cpu.flags & this.mask, wantFl = Number(big(a.flags));
    if (fl !== wantFl) diffs.push(`flags: machine 0x${fl.toString(16)}, CPU 0x${a.flags}`);
    const win = hexOf(m.mem.readBytes(this.winLo, 2 * this.winLen));
    if (win !== a.win) {
      for (let i = 0; i < 2 * this.winLen; i++) {
        const g = win.slice(2 * i, 2 * i + 2), w = a.win.slice(2 * i, 2 * i + 2);
        if (g !== w) diffs.push(`stack byte sp${i - this.winLen >= 0 ? "+" : ""}${i - this.winLen}: machine ${g}, CPU ${w}`);
      }
    }
    diffs.push(...this.stray);
    return { diffs };
  }
}

/** A one-line reproduction of a case, for reports. */
export function describeCase(c: RecordedCase): string {
  return `${c.kind} bytes=${c.bytes} ip=0x${c.before.ip} sp=0x${c.before.regs[4]} flags=0x${c.before.flags}` +
    (c.target !== "0" ? ` target=0x${c.target}` : "");
}
