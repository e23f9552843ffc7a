import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    testTimeout: 120_000,
    hookTimeout: 120_000,
    // Host tests start daemons and containers; two cores are shared by everything.
    fileParallelism: false,
    // A Ceph cluster, started by the first ceph test file that needs it, is shared and stopped at the end.
    globalSetup: ["./test/global-ceph.ts"],
    reporters: ["default", "./test/summary-reporter.ts"],
  },
});
