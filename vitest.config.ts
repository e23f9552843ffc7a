import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    testTimeout: 120_000,
    hookTimeout: 120_000,
    // Host tests start daemons and containers; two cores are shared by everything.
    fileParallelism: false,
    reporters: ["default", "./test/summary-reporter.ts"],
  },
});
