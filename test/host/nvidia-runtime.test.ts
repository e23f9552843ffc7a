// nvidia.runtime on real busybox containers with the stock client. Debian 12 main has no
// nvidia-container-cli: a start is refused with LXD's error, before anything is set up. LXD
// finds the tool on its PATH, so the test then puts a stand-in on the daemon's PATH that only
// records how it is called: liblxc runs the real Debian nvidia hook (/usr/share/lxc/hooks/nvidia)
// with the environment the daemon configured, and the hook execs the stand-in. The GPU part runs
// on a hardware tree with an NVIDIA card (NODELXD_HARDWARE_ROOT), as test/host/hardware-devices.
import { spawnSync } from "node:child_process";
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startInitialisedDaemon, type InitialisedDaemon } from "../helpers/instances.js";
import { NVIDIA_GPU_UUID, nvidiaContainerCliInfo, putMigCapabilities, putNvidiaCard, treeWriter } from "../helpers/hw-tree.js";

const top = mkdtempSync("/tmp/nv-rt-");
const bin = join(top, "bin");
const out = join(top, "out");
const tree = treeWriter(top);

let d: InitialisedDaemon;
beforeAll(async () => {
  // An NVIDIA card (as test/host/hardware-devices.test.ts builds it).
  putNvidiaCard(tree);
  putMigCapabilities(tree);
  mkdirSync(bin);
  // The hook runs as the container's root: the stand-in must be reachable and its record go to
  // a directory anyone may write.
  chmodSync(top, 0o755);
  mkdirSync(out);
  chmodSync(out, 0o777);
  d = await startInitialisedDaemon({ env: { NODELXD_HARDWARE_ROOT: top, PATH: `${bin}:${process.env.PATH}` } });
}, 120_000);
afterAll(async () => {
  await d?.teardown();
  rmSync(top, { recursive: true, force: true });
});

const ok = (r: { code: number; stderr: string }) => expect(r.code, r.stderr).toBe(0);
const hookInstalled = existsSync("/usr/share/lxc/hooks/nvidia");

describe("nvidia.runtime", () => {
  it.skipIf(!hookInstalled)("is refused at start without nvidia-container-cli, with LXD's error (needs liblxc's nvidia hook, package lxc)", () => {
    // Real LXD 5.0.2's answers on this host, byte for byte: created with the key, the start
    // fails; any config change while it is on fails (LXD loads the new config into liblxc).
    const c = d.launch("nvoff", { init: true, config: { "nvidia.runtime": "true" } });
    const r = d.lxc("start", c);
    expect(r.code).not.toBe(0);
    expect(r.stderr.split("\n")[0]).toBe("Error: Load go-lxc struct: The NVIDIA container tools couldn't be found");
    expect(JSON.parse(d.lxc("query", `/1.0/instances/${c}/state`).stdout).status).toBe("Stopped");
    expect(d.lxc("config", "set", c, "user.x=1").stderr.trim()).toBe("Error: Initialize LXC: The NVIDIA container tools couldn't be found");
    expect(d.lxc("config", "get", c, "user.x").stdout.trim()).toBe("");
    expect(d.lxc("config", "set", c, "nvidia.runtime=maybe").stderr.trim()).toBe('Error: Invalid config: Invalid value for a boolean "maybe"');
    ok(d.lxc("config", "set", c, "nvidia.runtime=false"));
    expect(d.lxc("config", "set", c, "nvidia.runtime=true").stderr.trim()).toBe("Error: Initialize LXC: The NVIDIA container tools couldn't be found");
    expect(d.lxc("config", "get", c, "nvidia.runtime").stdout.trim()).toBe("false");
    ok(d.lxc("start", c));
  });

  it.skipIf(!hookInstalled)("runs liblxc's nvidia hook with LXD's environment; the hook execs nvidia-container-cli (needs package lxc)", () => {
    // `info --csv` answers as the real tool (LXD reads the NVIDIA cards from it); other calls are recorded.
    writeFileSync(join(top, "info.csv"), nvidiaContainerCliInfo);
    writeFileSync(join(bin, "nvidia-container-cli"), `#!/bin/sh\nif [ "$1 $2" = "info --csv" ]; then cat ${top}/info.csv; exit 0; fi\nprintf '%s\\n' "$@" > ${out}/args.$$\nexit 0\n`);
    chmodSync(join(bin, "nvidia-container-cli"), 0o755);
    const c = d.launch("nvon", { init: true, config: { "nvidia.runtime": "true" } });
    ok(d.lxc("config", "device", "add", c, "g", "gpu", "vendorid=10de"));
    ok(d.lxc("start", c));
    const conf = readFileSync(join(d.dir, "logs", c, "lxc.conf"), "utf8");
    expect(conf).toContain(
      "lxc.environment = NVIDIA_VISIBLE_DEVICES=none\nlxc.environment = NVIDIA_DRIVER_CAPABILITIES=compute,utility\nlxc.environment = NVIDIA_REQUIRE_CUDA=\nlxc.environment = NVIDIA_REQUIRE_DRIVER=\nlxc.hook.mount = /usr/share/lxc/hooks/nvidia\n",
    );
    const calls = () => spawnSync("sh", ["-c", `cat ${out}/args.* 2>/dev/null; rm -f ${out}/args.*`], { encoding: "utf8" }).stdout.trim().split("\n");
    const args = calls();
    // Unprivileged: --user and --no-cgroups; LXD's capabilities; the two empty requirements.
    expect(args.slice(0, 3)).toEqual(["--user", "configure", "--no-cgroups"]);
    expect(args.filter((a) => a.startsWith("--") && !a.startsWith("--ldconfig"))).toEqual(["--user", "--no-cgroups", "--compute", "--utility", "--require=", "--require="]);
    expect(args.at(-1)).toMatch(/rootfs/);
    // The card node comes from the device, the non-card nodes are the hook's business.
    expect(d.lxc("exec", c, "--", "stat", "-c", "%t:%T", "/dev/nvidia0").stdout.trim()).toBe("c3:0");
    expect(d.lxc("exec", c, "--", "ls", "/dev/nvidiactl").code).not.toBe(0);
    expect(d.lxc("exec", c, "--", "ls", "/dev/nvidia-uvm").code).not.toBe(0);

    ok(d.lxc("stop", "-f", c));
    ok(d.lxc("config", "set", c, "nvidia.driver.capabilities=utility,video", "nvidia.require.cuda=cuda>=11.0"));
    ok(d.lxc("start", c));
    // LXD 5.0.2 passes a set requirement on as nothing (and the unset one as empty).
    expect(calls().filter((a) => a.startsWith("--") && !a.startsWith("--ldconfig"))).toEqual(["--user", "--no-cgroups", "--utility", "--video", "--require="]);
  });

  it.skipIf(!hookInstalled)("MIG: NVIDIA_VISIBLE_DEVICES names the MIG device for the hook (needs package lxc)", () => {
    const calls = () => spawnSync("sh", ["-c", `cat ${out}/args.* 2>/dev/null; rm -f ${out}/args.*`], { encoding: "utf8" }).stdout.trim().split("\n");
    const c = d.launch("nvmig", { init: true, config: { "nvidia.runtime": "true" } });
    // A compute instance the card does not have: LXD's error, the container stays stopped.
    ok(d.lxc("config", "device", "add", c, "m", "gpu", "gputype=mig", "vendorid=10de", "mig.gi=2", "mig.ci=0"));
    const r = d.lxc("start", c);
    expect(r.stderr).toContain('Failed to start device "m": MIG device gi=2 ci=0 doesn\'t exist on GPU 0');
    expect(JSON.parse(d.lxc("query", `/1.0/instances/${c}/state`).stdout).status).toBe("Stopped");
    ok(d.lxc("config", "device", "set", c, "m", "mig.gi=1"));
    calls();
    ok(d.lxc("start", c));
    // LXD's lines: "none" first (nvidia.runtime), then the devices' override.
    const conf = readFileSync(join(d.dir, "logs", c, "lxc.conf"), "utf8");
    const want = `MIG-${NVIDIA_GPU_UUID}/1/0`;
    expect(conf.indexOf("lxc.environment = NVIDIA_VISIBLE_DEVICES=none\n")).toBeGreaterThan(-1);
    expect(conf.indexOf(`lxc.environment = NVIDIA_VISIBLE_DEVICES=${want}\n`)).toBeGreaterThan(conf.indexOf("lxc.environment = NVIDIA_VISIBLE_DEVICES=none\n"));
    // liblxc's hook hands it to nvidia-container-cli; init inside sees it too.
    expect(calls()).toContain(`--device=${want}`);
    expect(d.lxc("exec", c, "--", "cat", "/proc/1/environ").stdout.split("\0")).toContain(`NVIDIA_VISIBLE_DEVICES=${want}`);
    // No node of its own: MIG access is libnvidia-container's business.
    expect(d.lxc("exec", c, "--", "ls", "/dev/nvidia0").code).not.toBe(0);

    // By MIG UUID, with a physical GPU alongside: both names, one variable.
    ok(d.lxc("stop", "-f", c));
    ok(d.lxc("config", "device", "set", c, "m", "mig.gi=", "mig.ci=", "mig.uuid=0a1b2c3d-1111-2222-3333-444455556666"));
    ok(d.lxc("config", "device", "add", c, "m2", "gpu", "gputype=mig", "pci=0000:01:00.0", "mig.uuid=MIG-0a1b2c3d-1111-2222-3333-777755556666"));
    ok(d.lxc("start", c));
    const both = "MIG-0a1b2c3d-1111-2222-3333-444455556666,MIG-0a1b2c3d-1111-2222-3333-777755556666";
    expect(readFileSync(join(d.dir, "logs", c, "lxc.conf"), "utf8")).toContain(`lxc.environment = NVIDIA_VISIBLE_DEVICES=${both}\n`);
    expect(calls()).toContain(`--device=${both}`);
    ok(d.lxc("stop", "-f", c));
  });
});
