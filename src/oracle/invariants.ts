import { Mnemonic } from "iced-x86";
import { Perm } from "../machine/page.js";
import type { Bench, EmuCase } from "./emulation.js";
import { armSite, layCase } from "./emulation.js";
import { startCase } from "./engine.js";

/** Bytes a trap-ending return consumes: IRETQ 5 words, same-privilege IRETD 3, ERETS the whole 64-byte FRED frame. */
const EXIT_FRAME: Record<number, number> = { [Mnemonic.Iretq]: 40, [Mnemonic.Iretd]: 12, [Mnemonic.Erets]: 64 };

export interface InvariantResult {
  readonly violations: readonly string[];
  /** The frame consumed by the return that ended the trap, [start, end). */
  readonly exitFrame?: readonly [bigint, bigint];
}

const hex = (v: bigint): string => "0x" + v.toString(16);

/**
 * Handler invariants for one emulated case (design.md): while the trap is handled — from the
 * #BP delivery to the IRET/ERETS that ends it — every write lands in the interrupted stack
 * below its stack pointer R (frames, the gap, pt_regs, the emulated push; for a RET, below
 * R + W, since the popped slot is dead), and a CALL's
 * emulated push [R−W, R) never overlaps the frame that the trap-ending return consumes
 * (the live exception frame: the copy on x86-64, the FRED frame with fred_info, the rebuilt
 * IRET frame on i386 v5.3), and that return consumes exactly the frame the exit path built
 * from the pt_regs the handler worked on.
 */
export function checkTrapInvariants(b: Bench, c: EmuCase): InvariantResult {
  const m = b.k.m;
  startCase(b); // the journal engine: back to the pristine machine
  const lc = layCase(b, c);
  armSite(b, c, lc);
  const W = BigInt(b.k.L.word);
  const R = lc.sp;
  // A RET pops [R, R+W): that slot is dead once the trap returns, and may be reused.
  const top = c.kind === "ret" ? R + W : R;
  const violations: string[] = [];
  let phase: "before" | "trap" | "after" = "before";
  let exitFrame: [bigint, bigint] | undefined;
  // The pt_regs the C handler got, and (2019-05-04 i386 design) the one it returned.
  let regsIn: bigint | undefined, regsOut: bigint | undefined, afterHost = false;
  const movesRegs = b.k.sym.has("do_kernel_int3");
  let built: bigint[] = [];
  const unhooks = [
    m.onException((_cpu, e) => {
      if (phase === "before" && e.vector === 3) phase = "trap";
    }),
    m.onWrite((a, n) => {
      if (phase !== "trap") return;
      if (a < lc.stackBase || a + BigInt(n) > top) violations.push(`write of ${n} bytes at ${hex(a)} outside the interrupted stack below ${hex(top)}`);
    }),
    m.onInstruction((cpu, _a, insn) => {
      if (phase !== "trap") return;
      if (afterHost) { afterHost = false; if (movesRegs) regsOut = cpu.reg(0); }
      if (insn.mnemonic === -1 && regsIn === undefined) { regsIn = cpu.reg(m.bits === 64 ? 7 : 0); afterHost = true; }
      const size = EXIT_FRAME[insn.mnemonic];
      if (size !== undefined) {
        exitFrame = [cpu.sp, cpu.sp + BigInt(size)];
        built = builtFrames(b, regsOut ?? regsIn);
        phase = "after";
      }
    }),
  ];
  try {
    const r = m.run({ maxSteps: 500 });
    if (exitFrame === undefined) violations.push(`the trap never returned (run: ${r.reason} ${r.detail ?? ""})`);
    else {
      if (c.kind === "call" && R - W < exitFrame[1] && R > exitFrame[0]) {
        violations.push(`the emulated push [${hex(R - W)}, ${hex(R)}) lands in the live frame [${hex(exitFrame[0])}, ${hex(exitFrame[1])})`);
      }
      if (!built.includes(exitFrame[0])) {
        violations.push(`the trap's return consumed the frame at ${hex(exitFrame[0])}, not the one built (${built.map(hex).join(" or ") || "no pt_regs seen"})`);
      }
    }
  } finally {
    for (const u of unhooks) u();
  }
  return { violations, exitFrame };
}

/**
 * Where the frame the trap's return must consume was built, given the pt_regs the exit
 * path restores from: IRETQ pops pt_regs->ip..ss; ERETS the FRED frame starting at
 * pt_regs->orig_ax; i386 IRET pops pt_regs->ip..flags, or (v5.3 IRET_FRAME) the three words
 * rebuilt just below the modified regs->sp.
 */
function builtFrames(b: Bench, regs: bigint | undefined): bigint[] {
  if (regs === undefined) return [];
  const m = b.k.m;
  if (b.variant.frame === "fred") return [regs + 120n];
  if (m.bits === 64) return [regs + 128n];
  const sp = BigInt(m.read32(regs + 60n));
  return [regs + 48n, sp - 12n];
}

/**
 * A user-mode int3 is never emulated: the int3 at a user address (declared as a patch site
 * where the variant's mechanism could see it) reaches the SIGTRAP path, and the frame the
 * CPU pushed is untouched when it gets there.
 */
export function checkUserInt3(b: Bench, c: EmuCase): InvariantResult {
  const { k } = b;
  const m = k.m;
  const L = k.L;
  startCase(b); // the journal engine: back to the pristine machine
  const lc = layCase(b, c);
  const site = L.userText + BigInt(c.spOffset & 0xfff);
  const userCase = { ...c, site };
  m.map(L.userText, 0x2000, Perm.R | Perm.X | Perm.U).map(L.userStack, 0x2000, Perm.R | Perm.W | Perm.U);
  armSite(b, b.variant.sites === "ftrace" ? c : userCase, lc);
  m.load(site, [0xcc, 0xf4]);
  const cpu = m.cpu;
  cpu.setCs(L.userCs);
  cpu.ss = L.userSs;
  cpu.sp = L.userStack + 0x1000n + BigInt(c.spOffset & 0xff);
  cpu.rip = site;
  cpu.flags = 0x202;
  const violations: string[] = [];
  const frame: [bigint, number][] = [];
  let delivering = false;
  const unhooks = [
    m.onException((_c, e) => { if (e.vector === 3 && frame.length === 0) delivering = true; }),
    m.onWrite((a, n) => { if (delivering) frame.push([a, n]); }),
    m.onInstruction(() => { delivering = false; }),
  ];
  const pushed = new Map<bigint, Uint8Array>();
  const snapFrame = (): void => { for (const [a, n] of frame) pushed.set(a, m.mem.readBytes(a, n)); };
  let snapped = false;
  const unSnap = m.onInstruction(() => { if (!snapped && frame.length > 0) { snapFrame(); snapped = true; } delivering = false; });
  try {
    const r = m.run({ maxSteps: 500 });
    const sig = k.events.find((e) => e.kind === "sigtrap");
    if (r.reason !== "stopped" || sig === undefined) violations.push(`user int3 did not reach SIGTRAP (run: ${r.reason} ${r.detail ?? ""}; events ${k.events.map((e) => e.kind).join(",")})`);
    else if (sig.ip !== site) violations.push(`SIGTRAP at ${hex(sig.ip)}, not ${hex(site)}`);
    // FRED's frame starts with the error code, which is pt_regs->orig_ax: the entry code
    // legitimately sets it to -1 (entry_fred.c). It is not part of the return state.
    const lowest = [...pushed.keys()].reduce((x, y) => (y < x ? y : x), 1n << 64n);
    for (const [a, bytes] of pushed) {
      if (b.variant.frame === "fred" && a === lowest) continue;
      const now = m.mem.readBytes(a, bytes.length);
      if (now.some((x, i) => x !== bytes[i])) violations.push(`the user trap's frame word at ${hex(a)} was written by a handler`);
    }
    if (frame.length === 0) violations.push("no frame was pushed");
  } finally {
    for (const u of unhooks) u();
    unSnap();
  }
  return { violations };
}

/** An int3 in kernel text that is not a patch site reaches die("int3") (the oops path). */
export function checkStrayInt3(b: Bench, c: EmuCase): InvariantResult {
  const { k } = b;
  const m = k.m;
  startCase(b); // the journal engine: back to the pristine machine
  const lc = layCase(b, c);
  armSite(b, { ...c, site: c.site + 0x100n }, lc); // some other site is in transition
  m.load(c.site, [0xcc]);
  const r = m.run({ maxSteps: 500 });
  const die = k.events.find((e) => e.kind === "die");
  const violations: string[] = [];
  if (r.reason !== "stopped" || die === undefined || die.what !== "int3") violations.push(`stray int3 did not oops (run: ${r.reason} ${r.detail ?? ""})`);
  else if (die.ip !== c.site) violations.push(`oops at ${hex(die.ip)}, not ${hex(c.site)}`);
  return { violations };
}
