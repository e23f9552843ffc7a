// Building fake hardware trees (sysfs, devfs, procfs) under a temporary root, which the daemon's
// hardware code is pointed at with NODELXD_HARDWARE_ROOT: files, links and character nodes.
import { spawnSync } from "node:child_process";
import { mkdirSync, symlinkSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";

export interface TreeWriter {
  /** A file holding `value` and a newline, as sysfs attributes read. */
  put(path: string, value: string): void;
  link(target: string, path: string): void;
  /** A character device node (mknod: root only); throws when it cannot be made. */
  mknod(path: string, major: number, minor: number, mode?: string): void;
}

export function treeWriter(top: string): TreeWriter {
  const parent = (p: string) => mkdirSync(dirname(join(top, p)), { recursive: true });
  return {
    put(p, value) {
      parent(p);
      writeFileSync(join(top, p), value + "\n");
    },
    link(target, p) {
      parent(p);
      symlinkSync(target, join(top, p));
    },
    mknod(p, major, minor, mode = "0664") {
      parent(p);
      const r = spawnSync("mknod", ["-m", mode, join(top, p), "c", String(major), String(minor)], { encoding: "utf8" });
      if (r.status !== 0) throw new Error(`mknod ${p} failed: ${r.stderr}`);
    },
  };
}

/**
 * An NVIDIA card (10de:1eb8, Tesla T4) at PCI 0000:01:00.0 driven by the nvidia driver: its DRM
 * card1, /proc's GPU information (Device Minor 0), and /dev/nvidia0, nvidiactl and nvidia-uvm.
 */
export function putNvidiaCard(t: TreeWriter): void {
  const nv = "sys/bus/pci/devices/0000:01:00.0";
  t.put(`${nv}/class`, "0x030000");
  t.put(`${nv}/vendor`, "0x10de");
  t.put(`${nv}/device`, "0x1eb8");
  t.put(`${nv}/drm/card1/dev`, "226:1");
  t.put("sys/bus/pci/drivers/nvidia/bind", "");
  t.link("../../../bus/pci/drivers/nvidia", `${nv}/driver`);
  t.put("proc/driver/nvidia/gpus/0000:01:00.0/information", "Model: \t\t Tesla T4\nIRQ:   \t\t 40\nDevice Minor: \t 0");
  t.mknod("dev/dri/card1", 226, 1, "0660");
  t.mknod("dev/nvidia0", 195, 0, "0666");
  t.mknod("dev/nvidiactl", 195, 255, "0666");
  t.mknod("dev/nvidia-uvm", 511, 0, "0666");
}

/** The UUID `nvidiaContainerCliInfo` gives the card of putNvidiaCard. */
export const NVIDIA_GPU_UUID = "GPU-6f3c7e1a-4e6b-2a7d-9b1e-0c5d8f2a7b10";

/** What `nvidia-container-cli info --csv` prints for the card of putNvidiaCard (libnvidia-container's format). */
export const nvidiaContainerCliInfo = `NVRM version,CUDA version\n525.85.12,12.0\n\nDevice Index,Device Minor,Model,Brand,GPU UUID,Bus Location,Architecture\n0,0,Tesla T4,Nvidia,${NVIDIA_GPU_UUID},00000000:01:00.0,7.5\n`;

/** MIG on the card of putNvidiaCard: GPU instance 1 with compute instance 0, as the driver's capability files show it. */
export function putMigCapabilities(t: TreeWriter): void {
  t.put("proc/driver/nvidia/capabilities/mig/config", "DeviceFileMinor: 1\nDeviceFileMode: 256\nDeviceFileModify: 1");
  t.put("proc/driver/nvidia/capabilities/gpu0/mig/gi1/access", "DeviceFileMinor: 21\nDeviceFileMode: 292\nDeviceFileModify: 1");
  t.put("proc/driver/nvidia/capabilities/gpu0/mig/gi1/ci0/access", "DeviceFileMinor: 22\nDeviceFileMode: 292\nDeviceFileModify: 1");
}
