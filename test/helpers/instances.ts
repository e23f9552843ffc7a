// A daemon set up the way users set one up (pool `default` on dir, the default profile's
// root disk, the busybox image as `busybox`), and real instances launched on it with the
// stock client. Everything launched is deleted by teardown(), whatever the test did.
import { spawnSync } from "node:child_process";
import { join } from "node:path";
import { startDaemon, type TestDaemon } from "./daemon.js";
import { busyboxImage } from "./image.js";

export interface InitialisedDaemon extends TestDaemon {
  /** A name unique to this run, deleted by teardown(). */
  instanceName(what: string): string;
  /**
   * `lxc launch busybox NAME` (unprivileged, the default); `init` only creates it; `network`
   * gives it eth0 on that managed network (`-n`). Returns NAME.
   */
  launch(what: string, opts?: { init?: boolean; config?: Record<string, string>; network?: string }): string;
  /** Host path of an instance's root filesystem. */
  rootfs(name: string): string;
  /** Host uid and gid of the instance's root, from the id map its files carry on disk. */
  hostRoot(name: string): { uid: number; gid: number };
  /** Delete every instance this run made, stop the daemon and remove its directory. */
  teardown(): Promise<void>;
}

export async function startInitialisedDaemon(opts: { env?: Record<string, string> } = {}): Promise<InitialisedDaemon> {
  const image = busyboxImage();
  const d = await startDaemon({ env: opts.env });
  const tag = `t${process.pid.toString(36)}${Math.random().toString(36).slice(2, 6)}`;
  const created = new Set<string>();
  const ok = (...args: string[]): string => {
    const r = d.lxc(...args);
    if (r.code !== 0) throw new Error(`lxc ${args.join(" ")} failed: ${r.stderr}`);
    return r.stdout;
  };
  const teardown = async () => {
    for (const n of created) {
      if (d.lxc("delete", "-f", n).code !== 0) spawnSync("lxc-stop", ["-k", "-n", n, "-P", join(d.dir, "containers")]);
    }
    await d.stop();
  };
  try {
    ok("storage", "create", "default", "dir");
    ok("profile", "device", "add", "default", "root", "disk", "path=/", "pool=default");
    ok("image", "import", image, "--alias", "busybox");
  } catch (e) {
    await teardown();
    throw e;
  }
  return Object.assign(d, {
    instanceName(what: string) {
      const n = `${tag}-${what}`;
      created.add(n);
      return n;
    },
    launch(what: string, opts: { init?: boolean; config?: Record<string, string>; network?: string } = {}) {
      const n = this.instanceName(what);
      const config = Object.entries(opts.config ?? {}).flatMap(([k, v]) => ["-c", `${k}=${v}`]);
      const network = opts.network ? ["-n", opts.network] : [];
      ok(opts.init ? "init" : "launch", "busybox", n, "-q", ...config, ...network);
      return n;
    },
    rootfs: (name: string) => join(d.dir, "containers", name, "rootfs"),
    hostRoot(name: string) {
      const map = JSON.parse(ok("config", "get", name, "volatile.last_state.idmap").trim() || "[]") as { Isuid: boolean; Isgid: boolean; Hostid: number; Nsid: number }[];
      const of = (key: "Isuid" | "Isgid") => map.find((m) => m[key] && m.Nsid === 0)?.Hostid ?? 0;
      return { uid: of("Isuid"), gid: of("Isgid") };
    },
    teardown,
  });
}
