// Counts test results for the one closing line CI reads: "N passed, M failed".
// scripts/test.sh prints it last; without SUMMARY_FILE it goes to stdout.
import { writeFileSync } from "node:fs";
import type { Reporter, TestModule } from "vitest/node";

export default class SummaryReporter implements Reporter {
  onTestRunEnd(modules: ReadonlyArray<TestModule>, errors: ReadonlyArray<unknown>): void {
    let passed = 0;
    let failed = 0;
    for (const m of modules) {
      for (const t of m.children.allTests()) {
        const state = t.result().state;
        if (state === "passed") passed++;
        else if (state === "failed") failed++;
      }
      if (m.state() === "failed" && [...m.children.allTests()].length === 0) failed++;
    }
    failed += errors.length;
    const line = `${passed} passed, ${failed} failed`;
    if (process.env.SUMMARY_FILE) writeFileSync(process.env.SUMMARY_FILE, line + "\n");
    else process.stdout.write(`\n${line}\n`);
  }
}
