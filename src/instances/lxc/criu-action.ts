// CRIU's action script for a live migration's final dump, as LXD uses it: CRIU runs the script
// once the dump is written and before it kills the container ("post-dump"); the script tells
// the daemon and waits for its answer: `ok` (the target restored the container: CRIU stops the
// source) or anything else (the script fails, so CRIU fails the dump and leaves the source
// running). LXD's script calls back into its API; ours talks to the daemon over two FIFOs in a
// root-only directory of the daemon's own.
import { closeSync, constants, openSync, rmSync, writeFileSync, writeSync } from "node:fs";
import { Socket } from "node:net";
import { join } from "node:path";
import { run } from "../../os/exec.js";

export interface ActionScript {
  /** The script to hand CRIU (`--action-script`). */
  path: string;
  /** Settles when CRIU reports the dump written. */
  dumped: Promise<void>;
  /** Answer the waiting script: `ok` lets CRIU stop the container, otherwise it resumes it. */
  answer(ok: boolean): void;
  /** Remove the FIFOs and the script (after CRIU has exited). */
  close(): void;
}

const quote = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;

/** Make the script and its two FIFOs in `dir` (a fresh directory only root can enter, e.g. from mkdtemp). */
export async function actionScript(dir: string): Promise<ActionScript> {
  const dumpedPath = join(dir, "dumped");
  const resultPath = join(dir, "result");
  await run("mkfifo", ["-m", "0600", "--", dumpedPath, resultPath]);
  // Opened read-write, so neither open blocks and the script's opens never wait for us.
  const dumpedFd = openSync(dumpedPath, constants.O_RDWR | constants.O_NONBLOCK);
  const resultFd = openSync(resultPath, constants.O_RDWR);
  const path = join(dir, "action.sh");
  writeFileSync(
    path,
    `#!/bin/sh -e\nif [ "$CRTOOLS_SCRIPT_ACTION" = "post-dump" ]; then\n\techo dumped > ${quote(dumpedPath)}\n\tread result < ${quote(resultPath)}\n\t[ "$result" = ok ]\nfi\n`,
    { mode: 0o500 },
  );
  const reader = new Socket({ fd: dumpedFd, readable: true, writable: false });
  const dumped = new Promise<void>((resolve) => reader.once("data", () => resolve()));
  let answered = false;
  return {
    path,
    dumped,
    answer(ok) {
      if (answered) return;
      answered = true;
      writeSync(resultFd, ok ? "ok\n" : "fail\n");
    },
    close() {
      reader.destroy();
      closeSync(resultFd);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
