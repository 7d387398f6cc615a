import { Decoder, DecoderError, DecoderOptions, Formatter, FormatterSyntax, type Instruction } from "iced-x86";
import type { Cpu } from "./cpu.js";
import { CpuFault, Vec } from "./events.js";
import { HostCall, type HostEntry } from "./host.js";
import { type Exec, type Insn, PlacedInsn } from "./insn.js";
import { compileData } from "./ops-data.js";
import { compileFast } from "./ops-fast.js";
import { compileMovFast } from "./ops-mov.js";
import { compileAluMemFast } from "./ops-alu-mem.js";
import { compileFlow, popRet64 } from "./ops-flow.js";
import { compileSeg } from "./ops-seg.js";
import { compileSystem } from "./ops-system.js";
import { Unsupported } from "./operands.js";
import { noteStackOp } from "./stack-runs.js";
import type { Page } from "./page.js";
import { toBig } from "./u64.js";

let gas: Formatter | undefined;
/** Formats an instruction in GAS syntax (one shared formatter, never freed). */
export function formatGas(ins: Instruction): string {
  gas ??= new Formatter(FormatterSyntax.Gas);
  return gas.format(ins);
}

/** Compiles a decoded iced instruction into its executor; unsupported ones raise #UD. */
export function compile(ins: Instruction, bits: number): Exec {
  try {
    const e = compileFast(ins, bits) ?? compileMovFast(ins, bits) ?? compileAluMemFast(ins, bits) ?? compileSystem(ins, bits) ?? compileSeg(ins, bits) ?? compileFlow(ins, bits) ?? compileData(ins, bits);
    if (e !== undefined) { noteStackOp(ins, bits, e); return e; }
    return udExec(`not modeled: ${formatGas(ins)}`);
  } catch (err) {
    if (err instanceof Unsupported) return udExec(`not modeled: ${formatGas(ins)} (${err.why})`);
    throw err;
  }
}

function udExec(detail: string): Exec {
  return () => { throw new CpuFault(Vec.UD, undefined, undefined, detail); };
}

/** Executor for a host function: run it, store the result, then `ret`. */
function hostExec(h: HostEntry, bits: number): Exec {
  const W = bits === 64 ? 8 : 4;
  // one HostCall reused per CPU (a fresh one when the function is re-entered meanwhile)
  let spare: HostCall | undefined;
  const fn = h.fn;
  return (c: Cpu) => {
    let call = spare;
    if (call !== undefined && call.cpu === c) { spare = undefined; call.noReturn = false; }
    else call = new HostCall(c, h.conv, h.name); // (a throw out of fn leaves spare empty: the next call makes a new one)
    const r = fn(call);
    spare = call;
    if (call.noReturn === true) return;
    if (r !== undefined) { // void functions (do_int3) skip the result
      if (typeof r === "number" && Number.isSafeInteger(r) && r >= 0 && r <= 0xffffffff) {
        c.lo[0] = r | 0;
        c.hi[0] = 0;
      } else {
        const v = BigInt.asUintN(64, BigInt(r));
        c.lo[0] = Number(BigInt.asIntN(32, v));
        c.hi[0] = bits === 64 ? Number(BigInt.asIntN(32, v >> 32n)) : 0;
      }
    }
    if (bits === 64) { popRet64(c, 8); return; } // (RET written out, as ops-flow.ts ret64)
    const tl = c.peekW(0), th = c.th;
    c.jumpTo(tl, th);
    c.spAdd(W);
  };
}

/**
 * The decode-cache miss path: decodes the instruction at (lo, hi) with iced-x86 (fetching
 * from the next page only when the instruction needs it, with #PF on a bad fetch), compiles
 * it, caches it in the page, and frees every iced object.
 */
export function makeDecode(hosts: ReadonlyMap<bigint, HostEntry>) {
  return (c: Cpu, lo: number, hi: number, page: Page): Insn => {
    const bits = c.bits;
    const addr = bits === 64 ? toBig(lo, hi) : BigInt(lo >>> 0);
    const off = lo & 4095;
    const host = hosts.get(addr);
    let insn: Insn;
    let crosses = false;
    let nextPage: Page | undefined;
    if (host !== undefined) {
      insn = mkInsn(hostExec(host, bits), 1, -1, page.data.slice(off, off + 1));
    } else {
      let bytes = page.data.subarray(off, Math.min(4096, off + 15));
      let r = decodeOne(bits, addr, bytes);
      if (r.tooShort) {
        const a = (lo >>> 0) + (4096 - off);
        nextPage = c.mem.readPage(a | 0, (hi + (a >= 4294967296 ? 1 : 0)) | 0, true, false);
        const joined = new Uint8Array(15);
        joined.set(bytes);
        joined.set(nextPage.data.subarray(0, 15 - bytes.length), bytes.length);
        bytes = joined;
        r = decodeOne(bits, addr, bytes);
        crosses = true;
      }
      insn = mkInsn(r.exec, r.len, r.mnemonic, bytes.slice(0, r.len));
      if (crosses && off + r.len <= 4096) crosses = false;
    }
    page.codeArray()[off] = insn;
    if (crosses && nextPage) nextPage.crossIn = true;
    c.mem.codeAdded();
    return insn;
  };
}

/**
 * Compiles the instruction a CPU would execute at (lo, hi) if it fetched `bytes` (up to 15)
 * — for fetch models where a CPU sees bytes memory no longer holds (stale or torn views).
 * Not cached. Undefined when the bytes end before the instruction does.
 */
export function decodeBytes(bits: 32 | 64, lo: number, hi: number, bytes: Uint8Array): Insn | undefined {
  const addr = bits === 64 ? toBig(lo, hi) : BigInt(lo >>> 0);
  const r = decodeOne(bits, addr, bytes);
  if (r.tooShort) return undefined;
  return mkInsn(r.exec, r.len, r.mnemonic, bytes.slice(0, r.len));
}

function mkInsn(exec: Exec, len: number, mnemonic: number, bytes: Uint8Array): Insn {
  return new PlacedInsn(exec, len, mnemonic, bytes, 0, 0);
}

function decodeOne(bits: number, addr: bigint, bytes: Uint8Array): { tooShort: boolean; exec: Exec; len: number; mnemonic: number } {
  const d = new Decoder(bits, bytes, DecoderOptions.None);
  let ins: Instruction | undefined;
  try {
    d.ip = addr;
    ins = d.decode();
    if (ins.isInvalid) {
      if (d.lastError === DecoderError.NoMoreBytes) return { tooShort: true, exec: udExec(""), len: 0, mnemonic: 0 };
      return { tooShort: false, exec: udExec("invalid opcode"), len: Math.max(1, ins.length), mnemonic: ins.mnemonic };
    }
    return { tooShort: false, exec: compile(ins, bits), len: ins.length, mnemonic: ins.mnemonic };
  } finally {
    ins?.free();
    d.free();
  }
}
