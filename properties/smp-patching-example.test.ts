import { expect, test } from "vitest";
import { execFileSync } from "node:child_process";
import { tracerSimExample } from "../examples/tracer-sim.js";

// The README's tracer-simulator example runs, and says what the properties say.
test("examples/tracer-sim.ts: tracing off, then enabled mid-run (int3 hits traced once), on, disabled, off", () => {
  const out = tracerSimExample();
  expect(out[0]).toMatch(/^tracing off: \d+ calls of 0x[0-9a-f]+, 0 traced$/);
  expect(out[1]).toMatch(/^enabling ran from step \d+ to \d+: .*int3→traced 1×/);
  expect(out[1]).not.toMatch(/traced [2-9]×|int3→traced 0×/);
  expect(out[2]).toMatch(/^tracing on: \d+ call→traced 1×$/);
  expect(out[4]).toMatch(/^tracing off again: \d+ nop→traced 0×$/);
  expect(out.at(-1)).toMatch(/oops: none$/);
});

test("examples/tracer-sim.ts runs as a program", () => {
  const out = execFileSync(process.execPath, ["--import", "tsx", "examples/tracer-sim.ts"], { encoding: "utf8" });
  expect(out.split("\n")[0]).toMatch(/^tracing off: /);
  expect(out).toMatch(/tracing on: \d+ call→traced 1×/);
});
