// gpu gputype=mig as LXD 5.0.2's gpuMIG: validation with its messages, the NVIDIA cards as
// LXD's resources read them (nvidia-container-cli's CSV, else /proc without UUIDs), and the run
// config a start gives (NVIDIA_VISIBLE_DEVICES items) on a hardware tree the test builds.
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { HardwareDevice } from "../../src/devices/hardware.js";
import { isUUID } from "../../src/devices/rules.js";
import { parseNvidiaContainerInfo } from "../../src/devices/sysfs.js";
import type { DeviceContext } from "../../src/devices/types.js";
import { generateLxcConfig } from "../../src/instances/lxc/config.js";
import { readGpu } from "../../src/daemon/resources/devices.js";
import { SysFs } from "../../src/daemon/resources/sysfs.js";
import { treeWriter } from "../helpers/hw-tree.js";

const top = mkdtempSync("/tmp/nodelxd-mig-");
const savedPath = process.env.PATH;
afterAll(() => rmSync(top, { recursive: true, force: true }));
afterEach(() => {
  process.env.PATH = savedPath;
});

// Two NVIDIA cards (minors 0 and 1) and an Intel one; MIG gi1/ci0 exists on GPU 0 only.
const t = treeWriter(top);
for (const [pci, minor] of [["0000:01:00.0", "0"], ["0000:02:00.0", "1"]]) {
  const dir = `sys/bus/pci/devices/${pci}`;
  t.put(`${dir}/class`, "0x030200");
  t.put(`${dir}/vendor`, "0x10de");
  t.put(`${dir}/device`, pci.startsWith("0000:01") ? "0x20b0" : "0x20b2");
  t.link("../../../bus/pci/drivers/nvidia", `${dir}/driver`);
  t.put(`proc/driver/nvidia/gpus/${pci}/information`, `Model: \t\t A100-SXM4-40GB\nIRQ:   \t\t 40\nGPU UUID: \t GPU-aaaaaaaa-0000-0000-0000-00000000000${minor}\nDevice Minor: \t ${minor}`);
}
t.put("sys/bus/pci/devices/0000:00:02.0/class", "0x030000");
t.put("sys/bus/pci/devices/0000:00:02.0/vendor", "0x8086");
t.put("sys/bus/pci/devices/0000:00:02.0/device", "0x5916");
t.put("proc/driver/nvidia/capabilities/gpu0/mig/gi1/ci0/access", "DeviceFileMinor: 12\nDeviceFileMode: 292");
const roots = { sys: join(top, "sys"), dev: join(top, "dev"), proc: join(top, "proc") };

const CSV = [
  "NVRM version,CUDA version",
  "470.57.02,11.4",
  "",
  "Device Index,Device Minor,Model,Brand,GPU UUID,Bus Location,Architecture",
  "0,0,A100-SXM4-40GB,Nvidia,GPU-6f3c7e1a-4e6b-2a7d-9b1e-0c5d8f2a7b10,00000000:01:00.0,8.0",
  "1,1,A100-SXM4-40GB,Nvidia,GPU-11111111-2222-3333-4444-555555555555,00000000:02:00.0,8.0",
].join("\n");

/** A stand-in nvidia-container-cli on PATH answering `info --csv` as the real one does. */
function standIn(out: string, code = 0): void {
  const bin = join(top, "bin");
  mkdirSync(bin, { recursive: true });
  writeFileSync(join(bin, "out.csv"), out);
  writeFileSync(join(bin, "nvidia-container-cli"), `#!/bin/sh\n[ "$1 $2" = "info --csv" ] && cat ${bin}/out.csv\nexit ${code}\n`);
  chmodSync(join(bin, "nvidia-container-cli"), 0o755);
  process.env.PATH = `${bin}:${savedPath}`;
}

const ctx = (config: Record<string, string>) => ({ project: "default", instance: "c", devicesDir: top, idmap: [], hostRootId: { uid: 0, gid: 0 }, instanceConfig: config }) as unknown as DeviceContext;
const mig = (config: Record<string, string>, instanceConfig: Record<string, string> = { "nvidia.runtime": "true" }) => new HardwareDevice(ctx(instanceConfig), "m", { type: "gpu", gputype: "mig", ...config }, roots);

describe("gpu mig", () => {
  it("validates with LXD's rules and messages", () => {
    const err = (c: Record<string, string>) => () => mig(c).validate();
    expect(err({})).toThrow(/^Either "mig.uuid" or both "mig.gi" and "mig.ci" must be set$/);
    expect(err({ "mig.gi": "1" })).toThrow(/^Either "mig.uuid" or both "mig.gi" and "mig.ci" must be set$/);
    expect(err({ "mig.uuid": "MIG-6f3c7e1a-4e6b-2a7d-9b1e-0c5d8f2a7b10", "mig.ci": "0" })).toThrow(/^Cannot use "mig.ci" when "mig.uuid" is set$/);
    expect(err({ "mig.gi": "256", "mig.ci": "0" })).toThrow(/^Invalid value for device option "mig.gi": Invalid value for an integer "256". Must be between 0 and 255$/);
    expect(err({ "mig.gi": "1", "mig.ci": "-1" })).toThrow(/^Invalid value for device option "mig.ci": Invalid value for an integer "-1". Must be between 0 and 255$/);
    expect(err({ "mig.uuid": "MIG-nope" })).toThrow(/^Invalid value for device option "mig.uuid": Invalid UUID$/);
    expect(err({ pci: "01:00.0", vendorid: "10de", "mig.gi": "1", "mig.ci": "0" })).toThrow(/^Cannot use "vendorid" when when "pci" is set$/);
    expect(err({ id: "0", productid: "20b0", "mig.gi": "1", "mig.ci": "0" })).toThrow(/^Cannot use "productid" when when "id" is set$/);
    expect(err({ vendorid: "10DE", "mig.gi": "1", "mig.ci": "0" })).toThrow('Invalid value for device option "vendorid"');
    // mig takes no uid/gid/mode (no device nodes of its own), unlike physical.
    expect(err({ mode: "0600", "mig.gi": "1", "mig.ci": "0" })).toThrow(/^Invalid device option "mode"$/);
    expect(err({ "mig.uuid": "6f3c7e1a-4e6b-2a7d-9b1e-0c5d8f2a7b10", pci: "0000:01:00.0" })).not.toThrow();
    expect(err({ "mig.gi": "0", "mig.ci": "255", id: "1", "user.x": "y" })).not.toThrow();
  });

  it("UUIDs as pborman/uuid parses them", () => {
    for (const ok of ["6f3c7e1a-4e6b-2a7d-9b1e-0c5d8f2a7b10", "6F3C7E1A-4E6B-2A7D-9B1E-0C5D8F2A7B10", "6f3c7e1a4e6b2a7d9b1e0c5d8f2a7b10", "{6f3c7e1a-4e6b-2a7d-9b1e-0c5d8f2a7b10}", "urn:uuid:6f3c7e1a-4e6b-2a7d-9b1e-0c5d8f2a7b10"]) expect(() => isUUID(ok)).not.toThrow();
    for (const bad of ["", "6f3c7e1a-4e6b-2a7d-9b1e-0c5d8f2a7b1", "6f3c7e1a4e6b-2a7d-9b1e-0c5d8f2a7b10-", "g f3c7e1a-4e6b-2a7d-9b1e-0c5d8f2a7b10", "6f3c7e1a-4e6b-2a7d-9b1e-0c5d8f2a7b10x"]) expect(() => isUUID(bad)).toThrow("Invalid UUID");
  });

  it("reads nvidia-container-cli's CSV as LXD does (cards from the 4th record, keyed by bus location)", () => {
    const cards = parseNvidiaContainerInfo(CSV);
    expect([...cards.keys()]).toEqual(["00000000:01:00.0", "00000000:02:00.0"]);
    expect(cards.get("00000000:02:00.0")).toEqual({ cardName: "nvidia1", cardDevice: "195:1", uuid: "GPU-11111111-2222-3333-4444-555555555555", model: "A100-SXM4-40GB", brand: "Nvidia", nvrmVersion: "470.57.02", cudaVersion: "11.4", architecture: "8.0" });
    expect(parseNvidiaContainerInfo('a,b\n1,2\nh\n0,3,"Model, ""x""",B,GPU-u,00000000:03:00.0,8.0\nshort,row').get("00000000:03:00.0")).toEqual({ cardName: "nvidia3", cardDevice: "195:3", uuid: "GPU-u", model: 'Model, "x"', brand: "B", nvrmVersion: "1", cudaVersion: "2", architecture: "8.0" });
  });

  it("starts with LXD's errors, in its order", async () => {
    const fails = (c: Record<string, string>, inst?: Record<string, string>) => mig(c, inst).start();
    await expect(fails({ "mig.gi": "1", "mig.ci": "0" }, {})).rejects.toThrow(/^Failed to start device "m": nvidia.runtime must be set to true for MIG GPUs to work$/);
    await expect(fails({ "mig.gi": "1", "mig.ci": "0" }, { "nvidia.runtime": "false" })).rejects.toThrow("nvidia.runtime must be set to true");
    await expect(fails({ pci: "09:00.0", "mig.gi": "1", "mig.ci": "0" })).rejects.toThrow(/^Failed to start device "m": Invalid PCI address \(no device found\): 0000:09:00.0$/);
    await expect(fails({ vendorid: "10de", "mig.gi": "1", "mig.ci": "0" })).rejects.toThrow(/: More than one GPU matched the MIG device$/);
    await expect(fails({ vendorid: "1002", "mig.gi": "1", "mig.ci": "0" })).rejects.toThrow(/: Failed to detect requested GPU device$/);
    await expect(fails({ pci: "00:02.0", "mig.gi": "1", "mig.ci": "0" })).rejects.toThrow(/: Card isn't a NVIDIA GPU or driver isn't properly setup$/);
    await expect(fails({ productid: "20b2", "mig.gi": "1", "mig.ci": "0" })).rejects.toThrow(/: MIG device gi=1 ci=0 doesn't exist on GPU 1$/);
    await expect(fails({ pci: "0000:01:00.0", "mig.gi": "2", "mig.ci": "0" })).rejects.toThrow(/: MIG device gi=2 ci=0 doesn't exist on GPU 0$/);
  });

  it("names the MIG device: MIG-<gpu uuid>/<gi>/<ci> (the UUID only nvidia-container-cli tells), or MIG-<mig.uuid>", async () => {
    // Without nvidia-container-cli LXD reads /proc, which gives no UUID.
    process.env.PATH = "/nonexistent";
    expect(await mig({ pci: "01:00.0", "mig.gi": "1", "mig.ci": "0" }).start()).toEqual({ nvidiaDevices: ["MIG-/1/0"] });
    standIn(CSV);
    expect(await mig({ productid: "20b0", "mig.gi": "1", "mig.ci": "0" }).start()).toEqual({ nvidiaDevices: ["MIG-GPU-6f3c7e1a-4e6b-2a7d-9b1e-0c5d8f2a7b10/1/0"] });
    // mig.uuid: no capability check, the prefix added once.
    expect(await mig({ productid: "20b2", "mig.uuid": "0a1b2c3d-1111-2222-3333-444455556666" }).start()).toEqual({ nvidiaDevices: ["MIG-0a1b2c3d-1111-2222-3333-444455556666"] });
    expect(await mig({ productid: "20b2", "mig.uuid": "MIG-0a1b2c3d-1111-2222-3333-444455556666" }).start()).toEqual({ nvidiaDevices: ["MIG-0a1b2c3d-1111-2222-3333-444455556666"] });
    // A failing nvidia-container-cli: /proc again.
    standIn(CSV, 1);
    expect(await mig({ pci: "01:00.0", "mig.gi": "1", "mig.ci": "0" }).start()).toEqual({ nvidiaDevices: ["MIG-/1/0"] });
    // Not hot-pluggable, as LXD's CanHotPlug false.
    await expect(mig({ pci: "01:00.0", "mig.gi": "1", "mig.ci": "0" }).attach(1)).rejects.toThrow(/^Failed to add device "m": Device cannot be added when instance is running$/);
    await expect(mig({ pci: "01:00.0", "mig.gi": "1", "mig.ci": "0" }).detach(1)).rejects.toThrow(/^Failed to stop device "m": Device cannot be stopped when instance is running$/);
  });

  it("the liblxc config overrides NVIDIA_VISIBLE_DEVICES after the devices, before raw.lxc", () => {
    const lines = generateLxcConfig({
      name: "c1",
      lxdDir: "/var/lib/lxd",
      rootfs: "/r",
      architecture: "x86_64",
      config: { "nvidia.runtime": "true", "raw.lxc": "lxc.environment = X=1" },
      idmap: [],
      cgroup: () => undefined,
      apparmor: false,
      hostMemoryBytes: 1 << 30,
      devices: [{ nvidiaDevices: ["MIG-GPU-a/1/0"] }, { lxc: [["lxc.mount.entry", "/a b none bind 0 0"]] }, { nvidiaDevices: ["MIG-b"] }],
      nvidiaHook: "/h/nvidia",
    });
    const keys = lines.map(([k, v]) => `${k}=${v}`);
    const none = keys.indexOf("lxc.environment=NVIDIA_VISIBLE_DEVICES=none");
    const mount = keys.indexOf("lxc.mount.entry=/a b none bind 0 0");
    const visible = keys.indexOf("lxc.environment=NVIDIA_VISIBLE_DEVICES=MIG-GPU-a/1/0,MIG-b");
    expect(none).toBeGreaterThan(-1);
    expect(mount).toBeGreaterThan(none);
    expect(visible).toBe(mount + 1);
    expect(keys[visible + 1]).toBe("lxc.environment=X=1");
  });
});

describe("resources", () => {
  it("GPU cards carry LXD's nvidia block: from nvidia-container-cli, else /proc (no UUID, no versions)", () => {
    const fs = new SysFs(top);
    const nv = (cards: ReturnType<typeof readGpu>["cards"]) => Object.fromEntries(cards.map((c) => [c.pci_address, c.nvidia]));
    expect(nv(readGpu(fs, "6.1.0").cards)).toEqual({
      "0000:00:02.0": undefined,
      "0000:01:00.0": { brand: "A100-SXM4-40GB", model: "A100-SXM4-40GB", card_name: "nvidia0", card_device: "195:0" },
      "0000:02:00.0": { brand: "A100-SXM4-40GB", model: "A100-SXM4-40GB", card_name: "nvidia1", card_device: "195:1" },
    });
    expect(nv(readGpu(fs, "6.1.0", undefined, parseNvidiaContainerInfo(CSV)).cards)["0000:01:00.0"]).toEqual({
      cuda_version: "11.4",
      nvrm_version: "470.57.02",
      brand: "Nvidia",
      model: "A100-SXM4-40GB",
      uuid: "GPU-6f3c7e1a-4e6b-2a7d-9b1e-0c5d8f2a7b10",
      architecture: "8.0",
      card_name: "nvidia0",
      card_device: "195:0",
    });
  });
});
