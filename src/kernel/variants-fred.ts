import { fredDelivery } from "../machine/fred.js";
import { pokeInt3HandlerEmulate, type PokeFeatures } from "./alternative.js";
import { assembleFredEntry } from "./entry-fred.js";
import { Kernel } from "./kernel.js";
import { doInt3, type Int3Chain } from "./traps.js";
import type { PatchKind, Variant } from "./variant.js";

/** FRED event types (fred_ss bits 51:48) the dispatcher routes. */
const SWEXC = 6n, HWEXC = 3n;

/**
 * fred_entry_from_kernel / fred_entry_from_user — arch/x86/entry/entry_fred.c v6.9: copy the
 * error code out of orig_ax, set regs->orig_ax = -1, and dispatch on the event type and
 * vector from regs->ss (fred_ss): INT3 (SWEXC, vector 3) → exc_int3; everything else oopses.
 */
function installFredDispatch(k: Kernel, chain: Int3Chain): bigint {
  return k.host("fred_entry", (call) => {
    const regs = k.regsArg(call);
    regs.set("orig_ax", -1n);
    const ss = regs.get("ss");
    const type = (ss >> 48n) & 0xfn, vector = (ss >> 32n) & 0xffn;
    if ((type === SWEXC || type === HWEXC) && vector === 3n) doInt3(k, chain, regs);
    else k.report({ kind: "die", what: `FRED event type ${type} vector ${vector}`, ip: regs.ip });
  });
}

/** Boots a FRED kernel: the FRED entry points, the dispatcher, poke_int3_handler with `f`, a red zone of `redzone` bytes. */
export function buildKernelFred(redzone: number, f: PokeFeatures): Kernel {
  const k = new Kernel(64);
  const entry = k.L.text + 0x4000n; // 4 KiB aligned
  const dispatch = installFredDispatch(k, { poke: (kk, r) => pokeInt3HandlerEmulate(kk, r, f) });
  assembleFredEntry(k, entry, dispatch);
  k.host("ftrace_regs_caller", () => undefined); // FRED models use text_poke sites only
  k.m.cpu.delivery = fredDelivery({ redzone, rsp0: k.L.stack + BigInt(k.L.threadSize), entrypoint: entry });
  return k;
}

const KINDS: readonly PatchKind[] = ["call", "jmp32", "jmp8", "nop2", "nop5", "ret", "jcc8", "jcc32"];
const POKE: PokeFeatures = { ret: true, jcc: true };

/** Linux's FRED redzone: FRED_CONFIG_REDZONE_AMOUNT << 6 = 64 bytes (arch/x86/include/asm/fred.h). */
export const FRED_REDZONE = 64;

export const VARIANTS_FRED: readonly Variant[] = [
  {
    name: "x86_64-fred/v6.9", bits: 64, frame: "fred", sites: "poke", emulates: KINDS,
    summary: "FRED delivery: 64-byte frame at ((R−64)&~63)−64 below a 64-byte red zone, ERETS; no software gap",
    boot: () => buildKernelFred(FRED_REDZONE, POKE),
  },
];

export const MUTANTS_FRED: readonly Variant[] = [
  {
    name: "x86_64-fred/mutant/red-zone-0", bits: 64, frame: "fred", sites: "poke", emulates: KINDS, mutantOf: "x86_64-fred/v6.9",
    breaks: "FRED without the red zone: when R ≡ 0 (mod 64) the emulated push lands in the live frame (fred_info)",
    summary: "IA32_FRED_CONFIG red zone 0",
    boot: () => buildKernelFred(0, POKE),
  },
];
