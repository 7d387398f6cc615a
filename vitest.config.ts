import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["properties/**/*.test.ts"],
    testTimeout: 120_000,
    pool: "threads",
  },
});
