// The unix nodes a hardware device (usb, unix-hotplug, gpu, tpm) passes into a container, as
// LXD's unixDeviceSetupCharNum/BlockNum, unixDeviceRemove and unixDeviceDeleteFiles: each node a
// unix-char/unix-block device named after the owning device (host node
// devices/<instance>/unix.<device>.<path>, cgroup rule, bind mount), owner and mode from the
// owning device's uid/gid/mode.
import { readdirSync, rmSync, statSync } from "node:fs";
import { join } from "node:path";
import type { DeviceConfig, DeviceContext } from "./types.js";
import { pathNameDecode, pathNameEncode, UnixDevice } from "./unix.js";

export interface NodeSpec {
  path: string;
  kind: "c" | "b";
  major: number;
  minor: number;
  /** The node's mode when the device config has none (LXD: the source node's mode; else 0660). */
  mode?: string;
}

/** The mode of a node on the host as an octal string ("" when it does not exist). */
export function hostNodeMode(path: string): string {
  try {
    return (statSync(path).mode & 0o7777).toString(8);
  } catch {
    return "";
  }
}

export class NodeSet {
  constructor(
    private readonly ctx: DeviceContext,
    private readonly name: string,
    private readonly config: DeviceConfig,
    /** Host node file prefix: "unix" (LXD's for gpu, usb, ...) or "infiniband.unix" (LXD's IBDevPrefix). */
    private readonly filePrefix = "unix",
  ) {}

  private unix(n: NodeSpec): UnixDevice {
    const c = this.config;
    return new UnixDevice(
      this.ctx,
      this.name,
      { type: n.kind === "c" ? "unix-char" : "unix-block", path: n.path, major: String(n.major), minor: String(n.minor), uid: c.uid ?? "", gid: c.gid ?? "", mode: c.mode || n.mode || "" },
      n.kind,
      this.filePrefix,
    );
  }

  /** Before the container starts: the node, and the liblxc lines that mount and allow it. */
  async setup(n: NodeSpec): Promise<[string, string][]> {
    return (await this.unix(n).start()).lxc ?? [];
  }

  /** Into the running container. */
  async plug(pid: number, n: NodeSpec): Promise<void> {
    await this.unix(n).attach(pid);
  }

  /** Out of the running container (node removed, unmounted, denied; a shared path stays mounted). */
  async unplug(pid: number, path: string): Promise<void> {
    await this.unix({ path, kind: "c", major: 0, minor: 0 }).detach(pid);
  }

  private get prefix(): string {
    return pathNameEncode(`${this.filePrefix}.${this.name}.`);
  }

  /** The container paths of the nodes this device has now. */
  paths(): string[] {
    let files: string[] = [];
    try {
      files = readdirSync(this.ctx.devicesDir);
    } catch {
      return [];
    }
    return files.filter((f) => f.startsWith(this.prefix)).map((f) => "/" + pathNameDecode(f.slice(this.prefix.length)));
  }

  has(path: string): boolean {
    return this.paths().includes(path);
  }

  async unplugAll(pid: number): Promise<void> {
    for (const p of this.paths()) await this.unplug(pid, p);
  }

  /** The instance stopped: forget every node of this device. */
  removeAll(): void {
    let files: string[] = [];
    try {
      files = readdirSync(this.ctx.devicesDir);
    } catch {
      return;
    }
    for (const f of files) if (f.startsWith(this.prefix)) rmSync(join(this.ctx.devicesDir, f), { force: true });
  }
}
