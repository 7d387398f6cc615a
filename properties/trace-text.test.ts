import { fc, test } from "@fast-check/vitest";
import { expect } from "vitest";
import { traceText } from "../src/smp/trace-text.js";

/** Reads traceText's output back into the trace it names. */
function expand(text: string): number[] {
  const out: number[] = [];
  const re = /\(([^)]*)\)×(\d+)|cpu(\d+)(?:×(\d+))?/g;
  for (let m = re.exec(text); m !== null; m = re.exec(text)) {
    if (m[1] !== undefined) {
      const block = expand(m[1]);
      for (let i = 0; i < Number(m[2]); i++) out.push(...block);
    } else {
      for (let i = 0; i < Number(m[4] ?? 1); i++) out.push(Number(m[3]));
    }
  }
  return out;
}

test("runs and repeated blocks are written compactly", () => {
  expect(traceText([1, 1, 1, 1, 1, 2, 0])).toBe("cpu1×5 cpu2 cpu0");
  expect(traceText([0, 1, 2, 1, 2, 1, 2, 1, 2, 1])).toBe("cpu0 (cpu1 cpu2)×4 cpu1");
  expect(traceText([1, 2, 1, 2])).toBe("cpu1 cpu2 cpu1 cpu2");
  expect(traceText([0, 0, 1, 2, 0, 0, 1, 2, 0, 0, 1, 2])).toBe("(cpu0×2 cpu1 cpu2)×3");
  expect(traceText([3, 4, 5], 1)).toBe("cpu4 cpu5");
  expect(traceText([])).toBe("");
});

test.prop([fc.array(fc.integer({ min: 0, max: 3 }), { maxLength: 300 })])("the text names every step: expanding it gives the trace back", (trace) => {
  expect(expand(traceText(trace))).toEqual(trace);
});

test.prop([fc.array(fc.integer({ min: 0, max: 2 }), { minLength: 1, maxLength: 4 }), fc.integer({ min: 3, max: 50 })])(
  "a block repeated three or more times is written once with its count",
  (block, n) => {
    const trace = Array.from({ length: n }, () => block).flat();
    expect(expand(traceText(trace))).toEqual(trace);
    expect(traceText(trace).length).toBeLessThan(20 * block.length + 10);
  },
);
