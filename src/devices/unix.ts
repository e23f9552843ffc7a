// unix-char / unix-block devices: the host node bind-mounted at `path` (containers can't
// mknod in a user namespace), plus a device cgroup rule allowing it.
import { existsSync, statSync } from "node:fs";
import { isAbsolute, normalize } from "node:path";
import { parseBool } from "../config/validators.js";
import type { Device, DeviceConfig, DeviceContext, RunConfig } from "./types.js";

const KNOWN = new Set(["type", "source", "path", "major", "minor", "uid", "gid", "mode", "required"]);

export class UnixDevice implements Device {
  constructor(
    private readonly ctx: DeviceContext,
    readonly name: string,
    readonly config: DeviceConfig,
    private readonly kind: "c" | "b",
  ) {}

  private get source(): string {
    return normalize(this.config.source || this.config.path);
  }

  private get target(): string {
    return normalize(this.config.path || this.config.source);
  }

  validate(): void {
    for (const k of Object.keys(this.config)) if (!KNOWN.has(k)) throw new Error(`Invalid device option "${k}"`);
    if (!this.config.source && !this.config.path) throw new Error(`Unix device entry is missing the required "source" or "path" property`);
    if (!isAbsolute(this.source) || !isAbsolute(this.target)) throw new Error("Unix device paths must be absolute");
    if (this.config.required === undefined || parseBool(this.config.required)) {
      if (!existsSync(this.source)) throw new Error(`The required device path doesn't exist and the major and minor settings are not specified`);
      const st = statSync(this.source);
      if (this.kind === "c" ? !st.isCharacterDevice() : !st.isBlockDevice()) throw new Error(`Path "${this.source}" is not a ${this.kind === "c" ? "character" : "block"} device`);
    }
  }

  private rule(): string | undefined {
    if (!existsSync(this.source)) return undefined;
    const rdev = statSync(this.source).rdev;
    const major = Math.floor(rdev / 256) & 0xfff;
    const minor = (rdev & 0xff) | ((rdev >> 12) & 0xfff00);
    return `${this.kind} ${major}:${minor} rwm`;
  }

  async start(): Promise<RunConfig> {
    const rule = this.rule();
    if (!rule) return {};
    const dst = this.target.replace(/^\/+/, "").replace(/ /g, "\\040");
    return {
      lxc: [
        ["lxc.mount.entry", `${this.source.replace(/ /g, "\\040")} ${dst} none bind,create=file 0 0`],
        ["lxc.cgroup.devices.allow", rule],
      ],
    };
  }

  async stop(): Promise<void> {}

  async attach(pid: number): Promise<void> {
    const rule = this.rule();
    if (!rule) return;
    const hotplug = this.ctx.hotplug;
    if (!hotplug) throw new Error("Hot-plugging devices is not supported here");
    hotplug.allowDevice?.(pid, rule);
    await hotplug.mount(pid, this.source, this.target, { readonly: false, recursive: false, isDir: false });
  }

  async detach(pid: number): Promise<void> {
    await this.ctx.hotplug?.unmount(pid, this.target, { remove: true });
  }
}
