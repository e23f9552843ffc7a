// CRIU's logs, as LXD reads them: what a failed dump or restore says (its Error and Warn lines,
// under "<purpose> <method> failed"), and a copy of each log kept with the instance's logs.
import { copyFileSync, readFileSync } from "node:fs";
import { join } from "node:path";
import type { CheckpointPurpose } from "../drivers/types.js";

type Method = "dump" | "restore";

/** LXD's error for a failed CRIU run, or undefined when CRIU wrote no log. */
export function criuFailure(dir: string, purpose: CheckpointPurpose, method: Method): string | undefined {
  let text: string;
  try {
    text = readFileSync(join(dir, `${method}.log`), "utf8");
  } catch {
    return undefined;
  }
  const lines = text.split("\n").filter((l) => l.includes("Error") || l.includes("Warn"));
  return `${purpose} ${method} failed\n${lines.join("\n")}`;
}

/** `<purpose>_<method>_<RFC 3339 time>.log` in the instance's log directory (LXD's collectCRIULogFile). */
export function keepCriuLog(dir: string, logDir: string, purpose: CheckpointPurpose, method: Method): void {
  const stamp = new Date().toISOString().replace(/\.\d{3}Z$/, "Z");
  try {
    copyFileSync(join(dir, `${method}.log`), join(logDir, `${purpose}_${method}_${stamp}.log`));
  } catch {
    /* CRIU never ran: there is no log to keep */
  }
}
