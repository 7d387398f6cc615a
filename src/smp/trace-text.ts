/**
 * A schedule trace as text: runs of one CPU as `cpu1×5`, and a block of 2–4 such tokens
 * repeated at least three times as `(cpu1 cpu2)×40`, so a long shrunk interleaving stays
 * readable. The text names every step: expanding it gives the trace back.
 */
export function traceText(trace: readonly number[], from = 0): string {
  const tokens: string[] = [];
  for (let k = from; k < trace.length;) {
    let e = k;
    while (e < trace.length && trace[e] === trace[k]) e++;
    tokens.push(e - k === 1 ? `cpu${trace[k]}` : `cpu${trace[k]}×${e - k}`);
    k = e;
  }
  const out: string[] = [];
  for (let k = 0; k < tokens.length;) {
    let best = { p: 1, n: 1 };
    for (let p = 2; p <= 4; p++) {
      let n = 1;
      while (k + (n + 1) * p <= tokens.length && sameBlock(tokens, k, k + n * p, p)) n++;
      if (n >= 3 && n * p > best.n * best.p) best = { p, n };
    }
    if (best.p === 1) { out.push(tokens[k]); k++; continue; }
    out.push(`(${tokens.slice(k, k + best.p).join(" ")})×${best.n}`);
    k += best.n * best.p;
  }
  return out.join(" ");
}

function sameBlock(t: readonly string[], a: number, b: number, p: number): boolean {
  for (let i = 0; i < p; i++) if (t[a + i] !== t[b + i]) return false;
  return true;
}
