// Devices backed by host hardware that are not in files of their own: gpu and pci (usb.ts,
// unix-hotplug.ts, tpm.ts and infiniband.ts hold the others). Config validated with LXD 5.0.2's rules
// and messages; hardware looked up under the hardware roots (sysfs.ts), so tests can build a
// tree. A physical GPU's DRM nodes (card, render, control) and, for cards the nvidia driver
// drives, NVIDIA's card node and its non-card nodes (nvidiactl, nvidia-uvm, ...) are passed in
// as LXD does, as unix-char devices. A MIG GPU (gputype=mig) names a MIG device of an NVIDIA
// card to libnvidia-container (NVIDIA_VISIBLE_DEVICES, read by liblxc's nvidia hook, so
// nvidia.runtime must be on). pci and gpu mdev/sriov are for virtual machines in LXD.
import { existsSync, statSync } from "node:fs";
import { join } from "node:path";
import { hostNodeMode, NodeSet, type NodeSpec } from "./node-set.js";
import { any, isDeviceID, isOctalMode, isPCIAddress, isUint8, isUnixId, isUUID, optional, validateKeys } from "./rules.js";
import { findGpus, hardwareRoots, migAccessPath, nvidiaNonCardNodes, parseDevNum, type GpuCard, type HardwareRoots } from "./sysfs.js";
import { nvidiaContainerCards } from "./nvidia-cli.js";
import type { Device, DeviceConfig, DeviceContext, RunConfig } from "./types.js";
import { parseBool } from "../config/validators.js";

export { findGpus, findUsb, type HardwareRoots } from "./sysfs.js";
export { validateKeys } from "./rules.js";

/** PCI address as LXD normalises it ("0000:" domain added, lower case). */
export const normalisePci = (a: string) => (a.split(":").length === 2 ? `0000:${a}` : a).toLowerCase();

/**
 * The GPUs as LXD's resources.GetGPU sees them: NVIDIA's cards from `nvidia-container-cli info
 * --csv` when that tool is on the daemon's PATH and succeeds (the only source of a card's UUID),
 * else from /proc/driver/nvidia.
 */
export async function gpuCards(roots: HardwareRoots): Promise<GpuCard[]> {
  return findGpus(roots, await nvidiaContainerCards());
}

/** LXD's gpuValidMigUUID: a UUID, with or without "MIG-" in front. */
const isMigUUID = (v: string) => isUUID(v.startsWith("MIG-") ? v.slice(4) : v);

/** A character node's numbers (undefined unless it is one). */
function charNode(path: string): { major: number; minor: number } | undefined {
  try {
    const st = statSync(path);
    if (!st.isCharacterDevice()) return undefined;
    return { major: Math.floor(st.rdev / 256) & 0xfff, minor: (st.rdev & 0xff) | ((st.rdev >> 12) & 0xfff00) };
  } catch {
    return undefined;
  }
}

export class HardwareDevice implements Device {
  private readonly nodes: NodeSet;

  constructor(
    private readonly ctx: DeviceContext,
    readonly name: string,
    readonly config: DeviceConfig,
    private readonly roots: HardwareRoots = hardwareRoots(),
  ) {
    this.nodes = new NodeSet(ctx, name, config);
  }

  private get kind(): string {
    const t = this.config.type;
    if (t === "gpu") return `gpu/${this.config.gputype || "physical"}`;
    return t;
  }

  validate(): void {
    const c = this.config;
    switch (this.kind) {
      case "gpu/physical": {
        validateKeys(c, { vendorid: optional(isDeviceID), productid: optional(isDeviceID), id: any, pci: optional(isPCIAddress), uid: optional(isUnixId), gid: optional(isUnixId), mode: optional(isOctalMode) }, ["gputype"]);
        if (c.pci) for (const f of ["id", "productid", "vendorid"]) if (c[f]) throw new Error(`Cannot use ${JSON.stringify(f)} when when "pci" is set`);
        if (c.id) for (const f of ["pci", "productid", "vendorid"]) if (c[f]) throw new Error(`Cannot use ${JSON.stringify(f)} when when "id" is set`);
        return;
      }
      case "gpu/mig": {
        validateKeys(c, { vendorid: optional(isDeviceID), productid: optional(isDeviceID), id: any, pci: optional(isPCIAddress), "mig.gi": optional(isUint8), "mig.ci": optional(isUint8), "mig.uuid": optional(isMigUUID) }, ["gputype"]);
        if (c.pci) for (const f of ["id", "productid", "vendorid"]) if (c[f]) throw new Error(`Cannot use ${JSON.stringify(f)} when when "pci" is set`);
        if (c.id) for (const f of ["pci", "productid", "vendorid"]) if (c[f]) throw new Error(`Cannot use ${JSON.stringify(f)} when when "id" is set`);
        if (c["mig.uuid"]) {
          for (const f of ["mig.gi", "mig.ci"]) if (c[f]) throw new Error(`Cannot use ${JSON.stringify(f)} when "mig.uuid" is set`);
        } else if (!c["mig.gi"] || !c["mig.ci"]) {
          throw new Error('Either "mig.uuid" or both "mig.gi" and "mig.ci" must be set');
        }
        return;
      }
      case "gpu/mdev":
      case "gpu/sriov":
        // LXD: these GPU types are for virtual machines only.
        throw new Error("Unsupported device type");
      case "pci":
        // LXD: PCI passthrough is for virtual machines only.
        throw new Error("Unsupported device type");
      default:
        throw new Error("Unsupported device type");
    }
  }

  async start(): Promise<RunConfig> {
    try {
      if (this.kind === "gpu/mig") return await this.startMig();
      if (this.kind !== "gpu/physical") throw new Error("Unsupported device type");
      return await this.startGpu();
    } catch (e) {
      this.nodes.removeAll();
      throw new Error(`Failed to start device ${JSON.stringify(this.name)}: ${(e as Error).message}`);
    }
  }

  /**
   * LXD's gpuPhysical.startContainer: every card matching vendorid/productid/pci gives its DRM
   * nodes (those of DRM card `id` only, when set) that exist under /dev/dri, and its NVIDIA
   * card node (/dev/nvidiaN) when the nvidia driver drives it and the node exists; after an
   * NVIDIA card, the non-card /dev/nvidia* nodes unless nvidia.runtime is true. Each node is a
   * unix-char device named after this one (host node, cgroup rule, bind mount; uid/gid/mode
   * from the config, else the host node's mode).
   */
  private async gpuNodes(): Promise<NodeSpec[]> {
    const c = this.config;
    const dev = this.roots.dev;
    const cards = (await gpuCards(this.roots)).filter((g) => (!c.vendorid || g.vendorid === c.vendorid) && (!c.productid || g.productid === c.productid) && (!c.pci || g.pci === normalisePci(c.pci)));
    if (cards.length === 0) throw new Error("Failed to detect requested GPU device");
    const out: NodeSpec[] = [];
    const add = (path: string, num: { major: number; minor: number }) => {
      if (!out.some((n) => n.path === path)) out.push({ path, kind: "c", ...num, mode: hostNodeMode(join(dev, path.slice("/dev/".length))) });
    };
    let sawNvidia = false;
    for (const card of cards) {
      if (!c.id || card.ids.includes(c.id)) {
        for (const node of card.drm) {
          const num = parseDevNum(node.dev);
          if (num && existsSync(join(dev, "dri", node.name))) add(`/dev/dri/${node.name}`, num);
        }
      }
      const nv = card.nvidia;
      const num = nv && parseDevNum(nv.cardDevice);
      if (nv && num && existsSync(join(dev, nv.cardName))) {
        sawNvidia = true;
        add(`/dev/${nv.cardName}`, num);
      }
    }
    // With nvidia.runtime the liblxc hook brings those in.
    if (sawNvidia && !parseBool(this.ctx.instanceConfig?.["nvidia.runtime"])) for (const n of nvidiaNonCardNodes(dev, charNode)) add(n.path, n);
    return out;
  }

  private async startGpu(): Promise<RunConfig> {
    const lxc: [string, string][] = [];
    for (const n of await this.gpuNodes()) lxc.push(...(await this.nodes.setup(n)));
    return { lxc };
  }

  /**
   * LXD's gpuMIG.Start: nvidia.runtime on and the pci device present (validateEnvironment), then
   * exactly one card matching vendorid/pci/productid, driven by nvidia, whose MIG device
   * exists (its capability file under /proc/driver/nvidia/capabilities, unless named by
   * mig.uuid): "MIG-<mig.uuid>" or "MIG-<gpu uuid>/<gi>/<ci>" for NVIDIA_VISIBLE_DEVICES.
   */
  private async startMig(): Promise<RunConfig> {
    const c = this.config;
    if (!parseBool(this.ctx.instanceConfig?.["nvidia.runtime"])) throw new Error("nvidia.runtime must be set to true for MIG GPUs to work");
    const pci = c.pci ? normalisePci(c.pci) : "";
    if (pci && !existsSync(join(this.roots.sys, "bus/pci/devices", pci))) throw new Error(`Invalid PCI address (no device found): ${pci}`);
    const nvidiaDevices: string[] = [];
    let matched = "";
    for (const card of await gpuCards(this.roots)) {
      if ((c.vendorid && card.vendorid !== c.vendorid) || (pci && card.pci !== pci) || (c.productid && card.productid !== c.productid)) continue;
      if (matched) throw new Error("More than one GPU matched the MIG device");
      matched = card.pci;
      if (!card.nvidia) throw new Error("Card isn't a NVIDIA GPU or driver isn't properly setup");
      const sep = card.nvidia.cardDevice.indexOf(":");
      if (sep < 0) throw new Error("Bad NVIDIA GPU (couldn't find ID)");
      const gpuId = card.nvidia.cardDevice.slice(sep + 1);
      const uuid = c["mig.uuid"];
      if (!uuid && !existsSync(migAccessPath(this.roots.proc, gpuId, c["mig.gi"], c["mig.ci"]))) throw new Error(`MIG device gi=${c["mig.gi"]} ci=${c["mig.ci"]} doesn't exist on GPU ${gpuId}`);
      nvidiaDevices.push(uuid ? (uuid.startsWith("MIG-") ? uuid : `MIG-${uuid}`) : `MIG-${card.nvidia.uuid}/${c["mig.gi"]}/${c["mig.ci"]}`);
    }
    if (!matched) throw new Error("Failed to detect requested GPU device");
    return { nvidiaDevices };
  }

  /** The nodes go with the device (found by name: the daemon may have restarted since the start). */
  async stop(): Promise<void> {
    if (this.config.type === "gpu") this.nodes.removeAll();
  }

  /** Hot-plug: a GPU's nodes go into the running container; the others fail as a start does. */
  async attach(pid: number): Promise<void> {
    // LXD's deviceAdd: a MIG GPU cannot be hot-plugged (CanHotPlug false).
    if (this.kind === "gpu/mig") throw new Error(`Failed to add device ${JSON.stringify(this.name)}: Device cannot be added when instance is running`);
    if (this.kind !== "gpu/physical") {
      await this.start();
      return;
    }
    try {
      for (const n of await this.gpuNodes()) await this.nodes.plug(pid, n);
    } catch (e) {
      throw new Error(`Failed to start device ${JSON.stringify(this.name)}: ${(e as Error).message}`);
    }
  }

  async detach(pid: number): Promise<void> {
    // LXD's deviceStop on a running instance: nor hot-unplugged.
    if (this.kind === "gpu/mig") throw new Error(`Failed to stop device ${JSON.stringify(this.name)}: Device cannot be stopped when instance is running`);
    await this.nodes.unplugAll(pid);
  }
}
