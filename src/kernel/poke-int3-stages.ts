import { bsearch, type PokeFeatures, pokeEmulateLoc, pokeInt3HandlerV52 } from "./alternative.js";
import type { Int3Stage, StagedHandler, StageResult } from "./int3-staged.js";
import type { Kernel } from "./kernel.js";
import { type PtRegs, userMode } from "./pt-regs.js";
import { type BpDesc, type PokeCompletion, pokeGlobals, type PokeVec, putDesc, tryGetDesc } from "./text-poke-batch.js";
import { INT3_INSN_SIZE } from "./text-patching.js";

// poke_int3_handler split at its loads of shared state, one staged version per completion
// scheme (spec §6.2–6.3), so another CPU can run between "got the descriptor" and "used it".

/** The site the trap is on, in a vector (bsearch when several, else compare vec[0]). */
function find(vec: PokeVec, nr: number, regs: PtRegs) {
  const ip = regs.ip - BigInt(INT3_INSN_SIZE);
  return nr > 1 ? bsearch(vec.locs, ip) : vec.locs[0]?.addr === ip ? vec.locs[0] : undefined;
}

/** Looks up and emulates; records a use of a vector whose batch already returned. */
function lookupAndEmulate(k: Kernel, regs: PtRegs, cpu: number, vec: PokeVec | null, nr: number, f: PokeFeatures): boolean {
  const g = pokeGlobals(k);
  if (vec === null) return false;
  if (!vec.live) {
    g.violations.push(`CPU ${cpu}: poke_int3_handler reads a text_poke_loc vector after its batch returned (use after free)`);
    return false;
  }
  const tp = find(vec, nr, regs);
  return tp !== undefined && pokeEmulateLoc(k, regs, tp, f);
}

/** poke_int3_handler — alternative.c v5.2: one stage (bp_patching_in_progress, detour). */
export function pokeInt3StagesV52(): StagedHandler {
  return [{ name: "poke_int3_handler", run: (k, regs) => (pokeInt3HandlerV52(k, regs) ? "handled" : "pass") }];
}

/**
 * poke_int3_handler — alternative.c v5.5 (c0213b0ac03c + c3d6324f841b): read
 * bp_patching.nr_entries, then (a later load) bp_patching.vec, which may be NULL if the
 * patcher cleared it meanwhile (§7.11: a NULL dereference — an oops).
 */
function nrEntriesStages(f: PokeFeatures): StagedHandler {
  return [
    {
      name: "poke_int3_handler:nr_entries", run: (k, regs, cpu) => {
        const g = pokeGlobals(k);
        if (g.bpPatching.nrEntries === 0 || userMode(regs)) return "pass";
        g.users.set(cpu, { vec: g.bpPatching.vec, handled: false });
        return "next";
      },
    },
    {
      name: "poke_int3_handler:vec", run: (k, regs, cpu) => {
        const g = pokeGlobals(k);
        g.users.delete(cpu);
        const vec = g.bpPatching.vec;
        if (vec === null) {
          k.report({ kind: "die", what: "BUG: kernel NULL pointer dereference in poke_int3_handler (bp_patching.vec)", ip: regs.ip - 1n });
          return "handled";
        }
        return lookupAndEmulate(k, regs, cpu, vec, g.bpPatching.nrEntries, f) ? "handled" : "pass";
      },
    },
  ];
}

/** The put_desc stage (alternative.c v5.6+): drop the reference; the trap is handled if the lookup emulated. */
function putDescStage(): Int3Stage {
  return {
    name: "poke_int3_handler:put_desc", run: (k, _regs, cpu) => {
      const g = pokeGlobals(k);
      const u = g.users.get(cpu);
      g.users.delete(cpu);
      if (u?.desc === undefined) return "pass";
      putDesc(u.desc);
      return u.handled === true ? "handled" : "pass";
    },
  };
}

/** The lookup stage of v5.6+: reads desc->vec and desc->nr_entries under the reference. */
function lookupStage(f: PokeFeatures): Int3Stage {
  return {
    name: "poke_int3_handler:lookup", run: (k, regs, cpu) => {
      const u = pokeGlobals(k).users.get(cpu);
      if (u?.desc === undefined) return "pass";
      const d: BpDesc = u.desc;
      u.handled = lookupAndEmulate(k, regs, cpu, d.vec, d.nrEntries, f);
      return "next";
    },
  };
}

/**
 * poke_int3_handler — alternative.c v5.6–v5.19 (1f676247f36a): try_get_desc is two loads,
 * `desc = READ_ONCE(bp_desc)` then `atomic_inc_not_zero(&desc->refs)` — on a descriptor that
 * lives on the patcher's stack (§7.13: the patcher may have returned in between).
 */
function descPointerStages(f: PokeFeatures): StagedHandler {
  return [
    {
      name: "poke_int3_handler:read_bp_desc", run: (k, regs, cpu): StageResult => {
        const g = pokeGlobals(k);
        if (userMode(regs)) return "pass";
        const d = g.bpDescPtr;
        if (d === null) return "pass";
        g.users.set(cpu, { desc: d });
        return "next";
      },
    },
    {
      name: "poke_int3_handler:try_get_desc", run: (k, _regs, cpu): StageResult => {
        const g = pokeGlobals(k);
        const u = g.users.get(cpu);
        if (u?.desc === undefined) return "pass";
        if (!u.desc.live) {
          g.violations.push(`CPU ${cpu}: try_get_desc's atomic_inc_not_zero on a descriptor whose patcher returned (use after scope)`);
          g.users.delete(cpu);
          return "pass";
        }
        if (!tryGetDesc(u.desc)) { g.users.delete(cpu); return "pass"; }
        return "next";
      },
    },
    lookupStage(f),
    putDescStage(),
  ];
}

/** poke_int3_handler — alternative.c v6.0+ (efd608fa7403): atomic_inc_not_zero on the one static bp_desc. */
function globalRefsStages(f: PokeFeatures): StagedHandler {
  return [
    {
      name: "poke_int3_handler:try_get_desc", run: (k, regs, cpu): StageResult => {
        const g = pokeGlobals(k);
        if (userMode(regs)) return "pass";
        if (!tryGetDesc(g.desc)) return "pass";
        g.users.set(cpu, { desc: g.desc, vec: g.desc.vec });
        return "next";
      },
    },
    lookupStage(f),
    putDescStage(),
  ];
}

/** The staged poke_int3_handler of a completion scheme. */
export function pokeInt3Stages(c: PokeCompletion, f: PokeFeatures): StagedHandler {
  return c === "nr_entries" ? nrEntriesStages(f) : c === "desc_pointer" ? descPointerStages(f) : globalRefsStages(f);
}
