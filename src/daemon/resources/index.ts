// GET /1.0/resources: the host's hardware, read from /proc and /sys on each request (files only,
// but for NVIDIA cards, which LXD asks `nvidia-container-cli info --csv` about first); what
// cannot change while we run (system identity, CPU model names) is read once.
import { release } from "node:os";
import { readCpu } from "./cpu.js";
import { readGpu, readNetwork, readPci, readStorage, readUsb, type LinkSettings } from "./devices.js";
import { readMemory } from "./memory.js";
import { applyOmitEmpty } from "./omitempty.js";
import { parseCpuinfo, parseIdDatabase, type IdDatabase } from "./parse.js";
import { SysFs } from "./sysfs.js";
import type { NvidiaCardInfo } from "../../devices/sysfs.js";
import { nvidiaContainerCards } from "../../devices/nvidia-cli.js";
import { readSystem, type SystemInfo } from "./system.js";

export class ResourcesService {
  private system?: SystemInfo;
  private cpuinfo?: Record<string, string>[];
  private pciIds?: IdDatabase;
  private usbIds?: IdDatabase;
  private readonly kernelRelease = release();

  constructor(
    private readonly architecture: string,
    private readonly fs = new SysFs("/"),
    /** The link settings ioctl (native/ethtool.c); absent in fixture-tree tests. */
    private readonly ethtool?: (ifname: string) => LinkSettings | null,
  ) {}

  /** The answer: NVIDIA cards from nvidia-container-cli when it answers, the rest from files. */
  async current() {
    return this.read(await nvidiaContainerCards());
  }

  /** From files only; `nvidia`: `nvidia-container-cli info --csv`'s cards, else /proc's are read. */
  read(nvidia?: Map<string, NvidiaCardInfo>) {
    const fs = this.fs;
    this.system ??= readSystem(fs);
    this.cpuinfo ??= parseCpuinfo(fs.read("/proc/cpuinfo") ?? "");
    this.pciIds ??= this.ids("pci.ids");
    this.usbIds ??= this.ids("usb.ids");
    return applyOmitEmpty({
      cpu: readCpu(fs, this.architecture, this.cpuinfo),
      memory: readMemory(fs),
      gpu: readGpu(fs, this.kernelRelease, this.pciIds, nvidia),
      network: readNetwork(fs, this.kernelRelease, this.pciIds, this.ethtool),
      storage: readStorage(fs),
      usb: readUsb(fs, this.kernelRelease, this.usbIds),
      pci: readPci(fs, this.kernelRelease, this.pciIds),
      system: this.system,
    });
  }

  /** The hwdata id database, if the host has one (read once). */
  private ids(file: string): IdDatabase {
    for (const dir of ["/usr/share/misc", "/usr/share/hwdata"]) {
      const text = this.fs.read(`${dir}/${file}`);
      if (text !== undefined) return parseIdDatabase(text);
    }
    return parseIdDatabase("");
  }
}
