import { mkdtempSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { expect, test } from "vitest";
import { makeDirs } from "../src/cli/make-dirs.js";

test("makeDirs creates missing parents and accepts an existing directory", () => {
  const root = mkdtempSync(join(tmpdir(), "int3bed-mkdirs-"));
  try {
    const deep = join(root, "a", "b", "c");
    makeDirs(deep);
    expect(statSync(deep).isDirectory()).toBe(true);
    makeDirs(deep);
    makeDirs(root);
    writeFileSync(join(root, "f"), "");
    expect(() => makeDirs(join(root, "f", "sub"))).toThrow(/ENOTDIR|EEXIST/);
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test("a directory under /proc is refused at once (Node's recursive mkdir never returns there)", () => {
  expect(() => makeDirs("/proc/int3bed-no-such/sub")).toThrow();
});
