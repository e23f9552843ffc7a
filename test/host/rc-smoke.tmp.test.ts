import { test } from "vitest";
import { spawnSync } from "node:child_process";
import { join } from "node:path";
import { rawContainer } from "../helpers/raw-container.js";
import { startDaemon, ROOT } from "../helpers/daemon.js";
test("smoke", async () => {
  const c = rawContainer();
  const d = await startDaemon({ main: join(ROOT, "test/helpers/raw-runtime-main.mjs"), env: { NODELXD_TEST_RAW_CONTAINERS: c.stateFile } });
  try {
    c.start();
    const lxc = (input: string | undefined, ...args: string[]) => {
      const r = spawnSync("lxc", args, { env: { ...process.env, LXD_DIR: d.dir, LXD_CONF: d.dir + ".lxdconf" }, encoding: "utf8", input, timeout: 30000 });
      console.log(JSON.stringify(args), "=>", r.status, JSON.stringify(r.stdout.slice(0, 500)), JSON.stringify(r.stderr));
    };
    lxc(undefined, "exec", c.name, "--", "sh", "-c", "echo out; echo err >&2; exit 3");
    lxc("hi\n", "exec", c.name, "--", "cat");
    lxc(undefined, "exec", c.name, "--env", "A=B", "--", "env");
    lxc(undefined, "exec", c.name, "--cwd", "/tmp", "--", "pwd");
    lxc(undefined, "exec", c.name, "--", "pwd");
    lxc(undefined, "exec", c.name, "--", "/hx/nope");
    lxc(undefined, "exec", c.name, "--", "sh", "-c", "kill -9 $$");
    lxc(undefined, "exec", c.name, "--user", "1000", "--", "id");
    const r = spawnSync("script", ["-qec", `lxc exec ${c.name} -- sh -c 'tty; stty size; echo $TERM; exit 5'`, "/dev/null"], { env: { ...process.env, LXD_DIR: d.dir, LXD_CONF: d.dir + ".lxdconf" }, encoding: "utf8", timeout: 30000 });
    console.log("pty", r.status, JSON.stringify(r.stdout), r.stderr);
  } finally {
    await d.stop();
    c.destroy();
  }
});
