import { expect, test } from "vitest";
import iced from "iced-x86";
import { Machine, Perm } from "../src/index.js";
import { makeDecode } from "../src/machine/decoder.js";

const wasm = (iced as unknown as { __wasm: { memory: WebAssembly.Memory } }).__wasm;

// Every iced object is freed: WASM memory (which never shrinks) stays flat over 10^6 decodes.
test("WASM memory stays flat over 10^6 decodes", () => {
  const m = new Machine({ bits: 64 });
  const base = 0xffffffff81000000n;
  m.map(base, 0x1000, Perm.R | Perm.X);
  // A mix of lengths and kinds, including an invalid opcode and an unmodeled instruction.
  const code = [0x48, 0x8d, 0x54, 0x0b, 0x08, 0xe8, 0, 0, 0, 0, 0x0f, 0x1f, 0x84, 0, 0, 0, 0, 0, 0x0f, 0x0b, 0xf3, 0xa4, 0x06, 0xcc];
  m.load(base, code);
  const starts = [0, 5, 10, 18, 20, 22, 23];
  const decode = makeDecode(new Map());
  const page = m.mem.readPage(0x81000000 | 0, -1, true, false);
  const run = (n: number): void => {
    for (let i = 0; i < n; i++) {
      const off = starts[i % starts.length];
      page.code = null; // force a real decode every time
      decode(m.cpu, (0x81000000 + off) | 0, -1, page);
    }
  };
  run(100_000);
  const before = wasm.memory.buffer.byteLength;
  run(1_000_000);
  expect(wasm.memory.buffer.byteLength).toBe(before);
});
