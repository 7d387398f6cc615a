import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import { resolve } from "node:path";
import { CandidateError } from "./usage.js";
import { PATCH_KINDS, type Variant } from "../kernel/variant.js";

// Loaded with require(), which on Node ≥ 20.19 loads an ES module synchronously (no
// top-level await), so `main` stays a synchronous function returning the exit code.
const load = createRequire(import.meta.url);

/**
 * A user's candidate kernel model(s): an ES module (or CommonJS) whose default export — or
 * named export `variants` / `variant` — is a Variant or an array of Variants. A missing file,
 * a module that fails to load or a bad export is a one-line CandidateError.
 */
export function loadCandidates(file: string): Variant[] {
  const abs = resolve(file);
  if (!existsSync(abs)) throw new CandidateError(`--candidate: no such file '${file}'`);
  let mod: unknown;
  try {
    mod = load(abs);
  } catch (e) {
    throw new CandidateError(`--candidate ${file}: cannot load it: ${loadErrorLine(e)}`);
  }
  const ns = (typeof mod === "object" && mod !== null ? mod : {}) as Record<string | symbol, unknown>;
  const isEsm = ns[Symbol.toStringTag] === "Module";
  const [exportName, value] = ns.default !== undefined ? ["default", ns.default]
    : ns.variants !== undefined ? ["variants", ns.variants]
    : ns.variant !== undefined ? ["variant", ns.variant]
    : ["module.exports", mod];
  if (isEsm && exportName === "module.exports") {
    const names = Object.keys(ns).filter((k) => k !== "__esModule");
    throw new CandidateError(`--candidate ${file}: no default export and no 'variant' or 'variants' export${names.length > 0 ? ` (it exports ${names.join(", ")})` : ""}`);
  }
  const list = Array.isArray(value) ? (value as unknown[]) : [value];
  if (list.length === 0) throw new CandidateError(`--candidate ${file}: export '${exportName}' is an empty array`);
  return list.map((x, i) => {
    const why = notAVariant(x);
    if (why !== undefined) {
      const where = Array.isArray(value) ? `export '${exportName}'[${i}]` : `export '${exportName}'`;
      throw new CandidateError(`--candidate ${file}: ${where} is not a Variant: ${why}`);
    }
    return x as Variant;
  });
}

function loadErrorLine(e: unknown): string {
  const code = (e as { code?: unknown }).code;
  if (code === "ERR_REQUIRE_ESM") return "loading an ES module synchronously needs Node ≥ 20.19";
  if (code === "ERR_REQUIRE_ASYNC_MODULE") return "the module uses top-level await, which a candidate cannot";
  const msg = e instanceof Error ? `${e.name}: ${e.message}` : String(e);
  return msg.split("\n")[0];
}

/** Why `x` is not a Variant, or undefined when it is one. */
function notAVariant(x: unknown): string | undefined {
  if (typeof x !== "object" || x === null) return `got ${x === null ? "null" : typeof x}`;
  const v = x as Record<string, unknown>;
  if (typeof v.name !== "string" || v.name === "") return "'name' must be a non-empty string";
  if (v.bits !== 32 && v.bits !== 64) return `'bits' must be 32 or 64 (in '${v.name}')`;
  if (v.frame !== "idt" && v.frame !== "fred") return `'frame' must be "idt" or "fred" (in '${v.name}')`;
  if (v.sites !== "ftrace" && v.sites !== "poke" && v.sites !== "notifier") return `'sites' must be "ftrace", "poke" or "notifier" (in '${v.name}')`;
  if (!Array.isArray(v.emulates)) return `'emulates' must be an array of ${PATCH_KINDS.join("/")} (in '${v.name}')`;
  const bad = (v.emulates as unknown[]).find((k) => !(PATCH_KINDS as readonly unknown[]).includes(k));
  if (bad !== undefined) return `'emulates' has '${String(bad)}'; valid: ${PATCH_KINDS.join(", ")} (in '${v.name}')`;
  if (typeof v.boot !== "function") return `'boot' must be a function returning a Kernel (in '${v.name}')`;
  if (v.summary !== undefined && typeof v.summary !== "string") return `'summary' must be a string (in '${v.name}')`;
  return undefined;
}
