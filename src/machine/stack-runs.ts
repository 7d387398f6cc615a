import { type Instruction, MemorySizeExt, Mnemonic, OpKind, Register } from "iced-x86";
import type { Cpu } from "./cpu.js";
import { type Exec, type Insn, setNextRip } from "./insn.js";
import type { Page } from "./page.js";
import { SEG } from "./segments.js";
import { hiOf, loOf } from "./u64.js";

/**
 * Fused stack runs: a run of back-to-back stack-width pushes (or pops) — the register saves
 * and restores of the entry/exit stubs (PUSH_AND_CLEAR_REGS/POP_REGS, SAVE_ALL/RESTORE_REGS)
 * and the 64-bit gap copy's `pushq 5*8(%rsp)` — executed by the run loop (Cpu.run) as one
 * operation: one dispatch, one page look-up and permission check for the whole range, then
 * plain loads and stores on the page, instead of one of each per instruction.
 *
 * Members (classified when compiled, by what the instruction does, see noteStackOp):
 *   PUSH r (stack width; PUSH rSP pushes rSP before the decrement), PUSH imm (stack width),
 *   PUSH sreg (i386, the selector zero-extended), PUSH W(rSP + disp) (SS, no index, stack
 *   width, |disp| ≤ 4096), and POP r (stack width, not rSP). A run is all pushes or all pops.
 *
 * A run is executed fused only when doing so is certainly what executing its members one by
 * one would do; otherwise stackRun returns 0 and the loop executes the first member as usual
 * (the next member may then start a fused run of its own). The conditions:
 *  1. fusion is on (Cpu.fuseStacks) and no instruction hook was set when the run began (the
 *     loop checks; it calls no hook set later either) and no exception hook is set now (a
 *     conservative choice: a fused run raises nothing but member 0's own fault, condition 7);
 *  2. no memory write watch (`mem.watch`) or read watch (`mem.readWatch`): each member's
 *     access would be reported;
 *  3. nothing pending (`c.pending === 0`): the loop looks at RF/keepRf, the STI shadow,
 *     pending interrupts (irrCount), stop requests and HLT only when `pending` is set after
 *     an instruction, and no member sets it; so no boundary inside the run does anything;
 *  4. the step budget: at most `budget` members (a scheduler stepping one instruction at a
 *     time uses Cpu.step, which never fuses); and none after `until` (the loop stops there);
 *  5. the members are still the instructions decoded at their addresses: each member is
 *     compared (identity) with the page's decode cache, where memory.ts's invalidation drops
 *     any instruction a write overlaps — so self-modifying code never runs a stale member and
 *     runs may be longer than one instruction's 15 bytes; a stale run is rebuilt;
 *  6. every byte the members read or write lies in one page, without the address wrapping
 *     (64-bit: RSP's low half does not carry; i386: SS base + ESP within 4 GiB), and, when a
 *     member reads through SS by address (PUSH m), SS's base and high half as the operand
 *     applies them equal the ones pushes use (ssBase, segHi[SS] = 0);
 *  7. the page checks are the first member's own: its first access (PUSH m: its read; else its
 *     write; POP: its read) goes through mem.readPage/writePage with exactly the address and
 *     flags the instruction uses — a fault there is thrown as that instruction's fault (the
 *     loop delivers it as it would), and success means every access of the run passes the
 *     same checks (present, writable for pushes, U/S at the current privilege, canonical:
 *     they are per page). The look-up's side effects (TLB fill, copy-on-write) are the ones
 *     that instruction makes first anyway;
 *  8. a push run does not write a page holding decoded code (or one an instruction from the
 *     page before runs into): those writes take memory.ts's invalidating path, so fall back;
 *  9. the journal records the old bytes the members' writes would: one record of the whole
 *     written range before the first store (each byte of it is written once, by one member),
 *     so rollback and the check engine's diff see what they would after the members' own
 *     records; the entries differ in shape only (one range instead of an extended run);
 * 10. icount/steps count every member (the loop adds the returned count); RIP, the current
 *     instruction address, RSP and the scratch the members leave (c.th, mem.rhi, c.aLo/aHi/eaHi)
 *     end as the last member leaves them.
 * Only member 0 can fault (condition 7): after its page passed, no member can.
 */

const K_REG = 0, K_IMM = 1, K_SEG = 2, K_MEM = 3, K_POP = 4;
/** Longest run built (the entry stubs' longest is 21). */
const MAX_RUN = 32;

/** What one stack instruction does, by its executor (shared by every address it is placed at). */
interface StackOp {
  readonly kind: number;
  /** Register (K_REG, K_POP), segment register (K_SEG) or displacement (K_MEM). */
  readonly arg: number;
  /** The immediate's halves (K_IMM). */
  readonly vlo: number;
  readonly vhi: number;
}

const OPS = new WeakMap<Exec, StackOp>();

/** The general register number of an iced register when it is `size` bytes wide, else -1. */
function gprOf(r: Register, size: number): number {
  if (size === 8 && r >= Register.RAX && r <= Register.R15) return r - Register.RAX;
  if (size === 4 && r >= Register.EAX && r <= Register.EDI) return r - Register.EAX;
  return -1;
}

/**
 * Records `exec` (compiled from `ins`) as a run member when `ins` is one of the shapes above,
 * with the semantics the compilers give it (ops-fast.ts compileStackReg, ops-flow.ts PUSH,
 * ops-seg.ts PUSH sreg): called by the decoder on every compile.
 */
export function noteStackOp(ins: Instruction, bits: number, exec: Exec): void {
  const m = ins.mnemonic;
  if ((m !== Mnemonic.Push && m !== Mnemonic.Pop) || ins.opCount !== 1) return;
  const W = bits === 64 ? 8 : 4;
  const k = ins.op0Kind;
  if (m === Mnemonic.Pop) {
    if (k !== OpKind.Register || ins.stackPointerIncrement !== W) return;
    const r = gprOf(ins.op0Register, W);
    if (r >= 0 && r !== 4) OPS.set(exec, { kind: K_POP, arg: r, vlo: 0, vhi: 0 });
    return;
  }
  if (-ins.stackPointerIncrement !== W) return;
  if (k === OpKind.Register) {
    const reg = ins.op0Register;
    const r = gprOf(reg, W);
    if (r >= 0) OPS.set(exec, { kind: K_REG, arg: r, vlo: 0, vhi: 0 });
    else if (bits === 32 && reg >= Register.ES && reg <= Register.GS) OPS.set(exec, { kind: K_SEG, arg: reg - Register.ES, vlo: 0, vhi: 0 });
    return;
  }
  if (k >= OpKind.Immediate8 && k <= OpKind.Immediate32to64 && k !== OpKind.Immediate8_2nd) {
    const v = BigInt.asUintN(64, ins.immediate(0));
    OPS.set(exec, { kind: K_IMM, arg: 0, vlo: loOf(v), vhi: W === 8 ? hiOf(v) : 0 });
    return;
  }
  if (k === OpKind.Memory && gprOf(ins.memoryBase, W) === 4 && ins.memoryIndex === Register.None &&
    ins.memorySegment === Register.SS && MemorySizeExt.size(ins.memorySize) === W && !ins.isIpRelMemoryOperand) {
    const d = Number(BigInt.asIntN(64, ins.memoryDisplacement));
    if (d >= -4096 && d <= 4096) OPS.set(exec, { kind: K_MEM, arg: d, vlo: 0, vhi: 0 });
  }
}

/** A run of members starting at one instruction (see the module comment); built by `build`. */
export class StackRun {
  constructor(
    readonly push: boolean,
    readonly n: number,
    readonly kinds: readonly number[],
    readonly args: readonly number[],
    readonly vlo: readonly number[],
    readonly vhi: readonly number[],
    /** Page offset of each member's first byte. */
    readonly offs: readonly number[],
    /** The members, as the decode cache held them when the run was built. */
    readonly insns: readonly Insn[],
    /** Per prefix of k members (index k): the lowest byte read or written, and the highest + 1, relative to SP before the run. */
    readonly low: readonly number[],
    readonly high: readonly number[],
    /** Whether a member reads through SS by address (K_MEM). */
    readonly hasMem: boolean,
    /** The decode-cache array and its version (Page.codeVer) when every member was last seen in it. */
    public codeArr: (Insn | undefined)[],
    public ver: number,
  ) {}
}

/**
 * The run starting at `ins` (page offset `off` of `code`), or null when it has fewer than two
 * members. Stores it on `ins` (or null) unless it ended at an instruction not decoded yet
 * (it may grow then: built again next time).
 */
function build(ins: Insn, code: (Insn | undefined)[], ver: number, off: number, bits: number): StackRun | null {
  const op0 = OPS.get(ins.exec);
  if (op0 === undefined) { ins.run = null; return null; }
  const push = op0.kind !== K_POP;
  const members: Insn[] = [ins], ops: StackOp[] = [op0], offs: number[] = [off];
  let at = off + ins.len, done = true;
  while (members.length < MAX_RUN && at < 4096) {
    const m = code[at];
    if (m === undefined) { done = false; break; }
    const op = OPS.get(m.exec);
    if (op === undefined || (op.kind !== K_POP) !== push || at + m.len > 4096) break;
    members.push(m); ops.push(op); offs.push(at);
    at += m.len;
  }
  const n = members.length;
  if (n < 2) {
    if (done) ins.run = null;
    return null;
  }
  const W = bits === 64 ? 8 : 4;
  // (plain arrays of small integers: an element load is cheaper than a typed array's, which
  // reloads its length, data pointer and buffer's detached bit at every access in this V8)
  const kinds: number[] = [], args: number[] = [], vlo: number[] = [], vhi: number[] = [];
  const low: number[] = [0], high: number[] = [0];
  let lo = 0, hi = 0, hasMem = false;
  for (let i = 0; i < n; i++) {
    const o = ops[i];
    kinds.push(o.kind); args.push(o.arg); vlo.push(o.vlo); vhi.push(o.vhi);
    if (push) {
      const sp = -W * i; // SP before member i, relative
      lo = Math.min(lo, sp - W);
      if (o.kind === K_MEM) { lo = Math.min(lo, sp + o.arg); hi = Math.max(hi, sp + o.arg + W); hasMem = true; }
    } else hi = W * (i + 1);
    low.push(lo); high.push(hi);
  }
  const run = new StackRun(push, n, kinds, args, vlo, vhi, offs, members, low, high, hasMem, code, ver);
  if (done) ins.run = run;
  return run;
}

const TWO32 = 4294967296;

/**
 * Executes the run starting at `ins` (at (lo, hi), fetched from `page`) fused when the
 * conditions in the module comment hold: returns the number of members executed, or 0 when
 * the caller must execute `ins` alone. At most `budget` members; none at `until` (uLo, uHi)
 * but the first. A fault of the first member's first access is thrown as the loop expects.
 */
export function stackRun(c: Cpu, ins: Insn, page: Page | null, lo: number, hi: number, budget: number, hasUntil: boolean, uLo: number, uHi: number): number {
  let r = ins.run;
  if (r === null || page === null) return 0;
  const code = page.code;
  if (code === null) return 0;
  const off0 = lo & 4095;
  if (r === undefined) {
    if (code[off0] !== ins) return 0;
    r = build(ins, code, page.codeVer, off0, c.bits);
    if (r === null) return 0;
  }
  const mem = c.mem;
  if (c.pending !== 0 || mem.watch !== null || mem.readWatch !== null || c.hooks.exception !== undefined) return 0;
  // the members executed: within the budget, and not past `until`
  let k = r.n < budget ? r.n : budget;
  const offs = r.offs, insns = r.insns;
  if (hasUntil && uHi === hi && ((uLo ^ lo) >>> 12) === 0) {
    const uo = uLo & 4095;
    for (let i = 1; i < k; i++) if (offs[i] === uo) { k = i; break; }
  }
  if (k < 2) return 0;
  // the members are still the instructions at their addresses (else rebuild next time): at
  // once when nothing left this decode cache since they were all seen there, else one by one
  if (code !== r.codeArr || page.codeVer !== r.ver) {
    for (let i = 1; i < k; i++) {
      if (code[offs[i]] !== insns[i]) { ins.run = undefined; return 0; }
    }
    let all = true;
    for (let i = k; i < r.n && all; i++) all = code[offs[i]] === insns[i];
    if (all) { r.codeArr = code; r.ver = page.codeVer; }
  }
  const W = c.bits === 64 ? 8 : 4;
  const spLo = c.lo[4], spHi = c.hi[4];
  // `base`: the address SP stands for (i386: linear, through SS's base); `aHi` its high half
  let base: number, aHi: number;
  if (W === 8) { base = spLo >>> 0; aHi = spHi; }
  else {
    if (r.hasMem && (c.segHi[SEG.SS] !== 0 || c.segBase[SEG.SS] !== c.ssBase)) return 0;
    base = (spLo + c.ssBase) >>> 0; aHi = 0;
  }
  const first = base + r.low[k], last = base + r.high[k] - 1;
  // (the wrap tests are implied by the page test, spans being far below 4 GiB; kept as the statement of condition 6)
  if (first < 0 || last >= TWO32 || ((first >>> 12) !== (last >>> 12))) return 0;
  const kinds = r.kinds, args = r.args;
  if (!r.push) {
    // POP r ×k: the first pop's read checks the page (as peekW does, with the scratch it sets first)
    if (W === 4) c.th = 0;
    const p = mem.readPage(base | 0, aHi, false, true);
    const i32 = p.i32, regLo = c.lo, regHi = c.hi;
    let o = base & 4095, vh = 0;
    if ((o & 3) === 0) {
      // word-aligned (every member then is: W is a multiple of 4): word loads, the word index
      // stepped (measured: ≈ 85 host instructions a pop before, with the alignment test, the
      // register files re-read from c and the offset re-shifted at every member)
      if (W === 8) for (let i = 0, q = o >> 2; i < k; i++, q += 2) { const d = args[i]; vh = i32[q + 1]; regLo[d] = i32[q]; regHi[d] = vh; }
      else for (let i = 0, q = o >> 2; i < k; i++, q++) { const d = args[i]; regLo[d] = i32[q]; regHi[d] = 0; }
    } else {
      const dv = p.dv;
      for (let i = 0; i < k; i++, o += W) {
        const vl = dv.getInt32(o, true);
        if (W === 8) vh = dv.getInt32(o + 4, true);
        const d = args[i];
        regLo[d] = vl; regHi[d] = vh;
      }
    }
    c.th = vh;
    if (W === 8) mem.rhi = vh;
    const s = (spLo >>> 0) + W * k; // (as spAdd)
    c.lo[4] = s | 0;
    if (W === 8 && s >= TWO32) c.hi[4] = (spHi + 1) | 0;
  } else {
    // PUSH ×k: the first push's own first access checks the page, with the scratch the
    // instruction sets before it (a fault leaves that behind): PUSH imm's c.th; PUSH m's
    // address (operands.ts memOperand), then its read and the value's high half
    const k0 = kinds[0];
    if (k0 === K_MEM) {
      const ra = (base + args[0]) | 0;
      c.eaHi = aHi; c.aLo = ra; c.aHi = aHi;
      const q = mem.readPage(ra, aHi, false, true);
      if (W === 8) { const h = q.dv.getInt32((ra & 4095) + 4, true); c.th = h; mem.rhi = h; }
    } else if (k0 === K_IMM) c.th = r.vhi[0];
    const p = mem.writePage((base - W) | 0, aHi, true);
    if (p.code !== null || p.crossIn) return 0;
    const i32 = p.i32, dv = p.dv;
    // the journal: one record for the whole range before any store (its old bytes are the
    // members' old bytes: every write of the run lies in it, each byte written once). (Measured:
    // the members' records as one run extending the frame's — Journal.reserveDown, the old
    // words copied by a JS loop — cost ≈ 600 host instructions more a 64-bit check than this
    // record's one builtin copy, though it saves two journal entries.)
    const j = mem.journal;
    if (j !== null) { const wl = (base - W * k) | 0; j.recordAt(p, wl, aHi, wl & 4095, W * k); }
    // (the register files and the store's word index in locals, stepped per member: the run
    // lies in one page, so member i stores at word q0 - i·W/4 when SP is word-aligned)
    const regLo = c.lo, regHi = c.hi, aligned = (base & 3) === 0, dq = W >> 2;
    for (let i = 0, q = ((base - W) & 4095) >> 2; i < k; i++, q -= dq) {
      let vl: number, vh = 0;
      const kind = kinds[i];
      if (kind === K_REG) {
        const g = args[i];
        if (g === 4) { vl = (spLo - W * i) | 0; vh = spHi; } // PUSH rSP: its value before the decrement
        else { vl = regLo[g]; vh = regHi[g]; }
      } else if (kind === K_MEM) {
        // the operand's read through SS at SP + disp (operands.ts memOperand)
        const a = base - W * i + args[i], o = a & 4095; // (the address; no wrap: checked above)
        if ((o & 3) === 0) { vl = i32[o >> 2]; if (W === 8) vh = i32[(o >> 2) + 1]; }
        else { vl = dv.getInt32(o, true); if (W === 8) vh = dv.getInt32(o + 4, true); }
        c.aLo = a | 0; c.aHi = aHi; c.eaHi = aHi;
        if (W === 8) { c.th = vh; mem.rhi = vh; }
      } else if (kind === K_IMM) { vl = r.vlo[i]; vh = r.vhi[i]; c.th = vh; }
      else vl = c.segSel[args[i]]; // K_SEG
      if (aligned) { i32[q] = vl; if (W === 8) i32[q + 1] = vh; }
      else { const o = (base - W * (i + 1)) & 4095; dv.setInt32(o, vl, true); if (W === 8) dv.setInt32(o + 4, vh, true); }
    }
    c.lo[4] = (spLo - W * k) | 0; // (64-bit: no borrow from the high half, checked above)
  }
  const lastIns = insns[k - 1];
  const la = (lo & ~4095) | offs[k - 1];
  c.curLo = la; c.curHi = hi;
  setNextRip(c, la, hi, lastIns.len);
  c.fusedRuns++;
  return k;
}
