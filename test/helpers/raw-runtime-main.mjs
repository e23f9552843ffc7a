// Test-only launcher: dist/main.js plus a feature serving InstancesPort.runtimeOf for the raw
// fixture containers of test/helpers/raw-container.ts (NODELXD_TEST_RAW_CONTAINERS = a
// colon-separated list of their state files). Replaced by the instances feature at merge.
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { features } from "../../dist/daemon/features.js";
import { NotFound } from "../../dist/api/errors.js";
import { identityIdMap, rangeIdMap } from "../../dist/instances/runtime-port.js";

const stateFiles = (process.env.NODELXD_TEST_RAW_CONTAINERS ?? "").split(":").filter(Boolean);

function runtime(project, name) {
  for (const f of stateFiles) {
    const s = JSON.parse(readFileSync(f, "utf8"));
    if (s.name !== name || project !== "default") continue;
    // liblxc keeps the init pid in the monitor's command socket only; ask /proc instead.
    const pid = initPid(s);
    return {
      project,
      name,
      lxcName: name,
      running: pid > 0,
      pid: pid > 0 ? pid : undefined,
      lxcpath: s.lxcpath,
      rootfs: s.rootfs,
      idmap: s.idBase ? rangeIdMap(s.idBase, s.idBase, s.idSize) : identityIdMap,
      environment: {},
    };
  }
  throw new NotFound("Instance not found");
}

/** The container's init: the child of the `[lxc monitor] LXCPATH NAME` process. */
function initPid(s) {
  
  for (const p of readdirSync("/proc")) {
    if (!/^\d+$/.test(p)) continue;
    let cmd;
    try {
      cmd = readFileSync(join("/proc", p, "cmdline"), "utf8");
    } catch {
      continue;
    }
    if (!cmd.startsWith(`[lxc monitor] ${s.lxcpath} ${s.name}`)) continue;
    const children = readFileSync(join("/proc", p, "task", p, "children"), "utf8").trim().split(/\s+/).filter(Boolean);
    return children.length ? Number(children[0]) : 0;
  }
  return 0;
}


features.push((core) => {
  core.ports.instances = {
    usedBy: () => [],
    exportForPublish: async () => {
      throw new Error("not available in the raw-container test launcher");
    },
    runtimeOf: runtime,
  };
  return { name: "test-raw-runtime", routes: () => [] };
});
if (!existsSync(new URL("../../dist/main.js", import.meta.url))) throw new Error("build first");
await import("../../dist/main.js");
