import { existsSync, mkdirSync } from "node:fs";
import { dirname, resolve } from "node:path";

/**
 * `mkdir -p`: creates `dir` and its missing parents, one level at a time. Node 20's
 * `mkdirSync(dir, { recursive: true })` never returns for some paths under /proc (it retries
 * the parent forever), so the walk is done here and the first failing mkdir throws.
 */
export function makeDirs(dir: string): void {
  const missing: string[] = [];
  for (let d = resolve(dir); !existsSync(d); d = dirname(d)) {
    missing.push(d);
    if (dirname(d) === d) break;
  }
  for (const d of missing.reverse()) mkdirSync(d);
}
