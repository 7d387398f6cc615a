/** JSON.stringify replacer for int3bed values: bigints as 0x hex strings, bytes as number arrays. */
export function jsonReplacer(_key: string, v: unknown): unknown {
  if (typeof v === "bigint") return "0x" + v.toString(16);
  if (v instanceof Uint8Array) return Array.from(v);
  return v;
}

/** One JSON document for the CLI's --json output. */
export function toJson(doc: unknown): string {
  return JSON.stringify(doc, jsonReplacer, 2);
}
