// nvidia.runtime as LXD 5.0.2's initLXC: the hook and nvidia-container-cli looked up where LXD
// looks ($LXD_LXC_HOOK or /usr/share/lxc/hooks; the PATH), its errors, and the config lines
// (with LXD's inverted NVIDIA_REQUIRE_* condition).
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { generateLxcConfig } from "../../src/instances/lxc/config.js";
import { nvidiaConfigLines, nvidiaHookPath, nvidiaRuntimeHook } from "../../src/instances/lxc/nvidia.js";
import { validateInstanceConfig } from "../../src/instances/config-keys.js";

let dir = "";
const savedPath = process.env.PATH;
beforeAll(() => {
  dir = mkdtempSync("/tmp/nodelxd-test-nv-");
  mkdirSync(join(dir, "hooks"));
  mkdirSync(join(dir, "bin"));
});
afterAll(() => {
  process.env.PATH = savedPath;
  rmSync(dir, { recursive: true, force: true });
});

describe("nvidia.runtime", () => {
  it("hook path: $LXD_LXC_HOOK/nvidia, else liblxc's", () => {
    expect(nvidiaHookPath({})).toBe("/usr/share/lxc/hooks/nvidia");
    expect(nvidiaHookPath({ LXD_LXC_HOOK: "/opt/h" })).toBe("/opt/h/nvidia");
  });

  it("off: nothing looked up; on: LXD's errors for a missing hook, then missing tools", () => {
    const env = { LXD_LXC_HOOK: join(dir, "hooks") };
    expect(nvidiaRuntimeHook({ "nvidia.runtime": "false" }, env)).toBeUndefined();
    expect(nvidiaRuntimeHook({}, env)).toBeUndefined();
    expect(() => nvidiaRuntimeHook({ "nvidia.runtime": "true" }, env)).toThrow(/^The NVIDIA LXC hook couldn't be found$/);
    writeFileSync(join(dir, "hooks/nvidia"), "#!/bin/sh\n");
    process.env.PATH = join(dir, "bin");
    expect(() => nvidiaRuntimeHook({ "nvidia.runtime": "yes" }, env)).toThrow(/^The NVIDIA container tools couldn't be found$/);
    writeFileSync(join(dir, "bin/nvidia-container-cli"), "#!/bin/sh\n");
    chmodSync(join(dir, "bin/nvidia-container-cli"), 0o755);
    expect(nvidiaRuntimeHook({ "nvidia.runtime": "1" }, env)).toBe(join(dir, "hooks/nvidia"));
    process.env.PATH = savedPath;
  });

  it("config lines in LXD's order; NVIDIA_REQUIRE_* only when the key is unset (as 5.0.2 does)", () => {
    expect(nvidiaConfigLines({}, "/h/nvidia")).toEqual([
      ["lxc.environment", "NVIDIA_VISIBLE_DEVICES=none"],
      ["lxc.environment", "NVIDIA_DRIVER_CAPABILITIES=compute,utility"],
      ["lxc.environment", "NVIDIA_REQUIRE_CUDA="],
      ["lxc.environment", "NVIDIA_REQUIRE_DRIVER="],
      ["lxc.hook.mount", "/h/nvidia"],
    ]);
    expect(nvidiaConfigLines({ "nvidia.driver.capabilities": "all", "nvidia.require.cuda": "cuda>=11", "nvidia.require.driver": ">=470" }, "/h/nvidia")).toEqual([
      ["lxc.environment", "NVIDIA_VISIBLE_DEVICES=none"],
      ["lxc.environment", "NVIDIA_DRIVER_CAPABILITIES=all"],
      ["lxc.hook.mount", "/h/nvidia"],
    ]);
  });

  it("the generated liblxc config has them after the environment.* lines", () => {
    const lines = generateLxcConfig({
      name: "c1",
      lxdDir: "/var/lib/lxd",
      rootfs: "/r",
      architecture: "x86_64",
      config: { "environment.FOO": "bar", "nvidia.runtime": "true" },
      idmap: [],
      cgroup: () => undefined,
      apparmor: false,
      hostMemoryBytes: 1 << 30,
      devices: [],
      nvidiaHook: "/h/nvidia",
    });
    const keys = lines.map(([k, v]) => `${k}=${v}`);
    const env = keys.indexOf("lxc.environment=FOO=bar");
    expect(env).toBeGreaterThan(-1);
    expect(keys.slice(env + 1, env + 6)).toEqual(["lxc.environment=NVIDIA_VISIBLE_DEVICES=none", "lxc.environment=NVIDIA_DRIVER_CAPABILITIES=compute,utility", "lxc.environment=NVIDIA_REQUIRE_CUDA=", "lxc.environment=NVIDIA_REQUIRE_DRIVER=", "lxc.hook.mount=/h/nvidia"]);
  });

  it("the keys are instance config keys (nvidia.runtime a boolean)", () => {
    expect(() => validateInstanceConfig({ "nvidia.runtime": "true", "nvidia.driver.capabilities": "compute", "nvidia.require.cuda": "x", "nvidia.require.driver": "y" })).not.toThrow();
    expect(() => validateInstanceConfig({ "nvidia.runtime": "maybe" })).toThrow();
  });
});
