// The ceph driver's view of a cluster: the `ceph` and `rbd` tools run as one client
// (`ceph.user.name` of `ceph.cluster_name`), and upstream's rbd image names for volumes.
import { randomUUID } from "node:crypto";
import { run, CommandError } from "../../os/exec.js";
import { isSnapshotVolume, type SlowOpts, type Volume, type VolumeType } from "./types.js";

/** The rbd image type prefix of a volume type, as upstream names images ("container_c1", "custom_default_v1"). */
const TYPE_PREFIX: Record<VolumeType, string> = { container: "container", "virtual-machine": "virtual-machine", image: "image", custom: "custom" };

export interface CephClient {
  cluster: string;
  user: string;
  osdPool: string;
}

/** The block filesystem a volume is formatted with. */
export const blockFilesystem = (vol: Volume, poolConfig: Record<string, string>): string => vol.config["block.filesystem"] || poolConfig["volume.block.filesystem"] || "ext4";

/**
 * A volume's rbd image (without pool): "<type>_<name>", images "image_<fingerprint>_<fs>",
 * zombies (deleted but still holding clones) "zombie_<...>". A snapshot volume "<parent>/<snap>"
 * is the rbd snapshot "<parent image>@snapshot_<snap>". Block volumes' images end in ".block".
 */
export function rbdImageName(vol: Volume, fs: string, zombie = false): string {
  const [parent, snap] = isSnapshotVolume(vol) ? vol.name.split("/", 2) : [vol.name, undefined];
  // A block volume's image (LXD's cephBlockVolSuffix): "custom_default_vol1.block".
  const base = `${zombie ? "zombie_" : ""}${TYPE_PREFIX[vol.type]}_${parent}${vol.type === "image" ? `_${fs}` : ""}${vol.contentType === "block" ? ".block" : ""}`;
  return snap === undefined ? base : `${base}@snapshot_${snap}`;
}

export class Ceph {
  constructor(readonly client: CephClient) {}

  private get cephArgs(): string[] {
    return ["--name", `client.${this.client.user}`, "--cluster", this.client.cluster];
  }

  private get rbdArgs(): string[] {
    return ["--id", this.client.user, "--cluster", this.client.cluster];
  }

  /** "<osd pool>/<image>[@snap]" */
  spec(image: string): string {
    return `${this.client.osdPool}/${image}`;
  }

  ceph(args: string[], opts: SlowOpts = {}) {
    return run("ceph", [...this.cephArgs, ...args], { signal: opts.signal });
  }

  rbd(args: string[], opts: SlowOpts = {}) {
    return run("rbd", [...this.rbdArgs, ...args], { signal: opts.signal });
  }

  async rbdJson<T>(args: string[], opts: SlowOpts = {}): Promise<T> {
    const r = await this.rbd([...args, "--format", "json"], opts);
    return JSON.parse(r.stdout || "null") as T;
  }

  async osdPoolExists(): Promise<boolean> {
    const r = await run("ceph", [...this.cephArgs, "osd", "pool", "get", this.client.osdPool, "size"], { reject: false });
    return r.exitCode === 0;
  }

  async deleteOsdPool(opts: SlowOpts = {}): Promise<void> {
    await this.ceph(["osd", "pool", "delete", this.client.osdPool, this.client.osdPool, "--yes-i-really-really-mean-it"], opts);
  }

  async exists(image: string): Promise<boolean> {
    const r = await run("rbd", [...this.rbdArgs, "info", this.spec(image)], { reject: false });
    if (r.exitCode === 0) return true;
    if (/No such file or directory|error opening/.test(r.stderr)) return false;
    throw new CommandError("rbd", r.exitCode, r.stderr);
  }

  /** Image names in the OSD pool. */
  async list(opts: SlowOpts = {}): Promise<string[]> {
    return (await this.rbdJson<string[]>(["ls", this.client.osdPool], opts)) ?? [];
  }

  async snapshots(image: string): Promise<{ name: string; protected: string }[]> {
    return (await this.rbdJson<{ name: string; protected: string }[]>(["snap", "ls", this.spec(image)])) ?? [];
  }

  /** Clones of a snapshot ("pool/image" strings). */
  async children(imageAtSnap: string): Promise<string[]> {
    const r = await this.rbd(["children", this.spec(imageAtSnap)]);
    return r.stdout.split("\n").filter(Boolean);
  }

  /** The snapshot an image was cloned from ("image@snap" within the same pool), if any. */
  async parent(image: string): Promise<string | undefined> {
    const info = await this.rbdJson<{ parent?: { pool: string; image: string; snapshot: string } }>(["info", this.spec(image)]);
    if (!info?.parent || info.parent.pool !== this.client.osdPool) return undefined;
    return `${info.parent.image}@${info.parent.snapshot}`;
  }

  async size(image: string): Promise<number> {
    return (await this.rbdJson<{ size: number }>(["info", this.spec(image)])).size;
  }

  /**
   * Map an image (or snapshot) to a kernel block device and return its path. Where the kernel
   * refuses (no rbd module), its answer is the error.
   */
  async map(image: string, opts: SlowOpts & { readOnly?: boolean } = {}): Promise<string> {
    const r = await run("rbd", [...this.rbdArgs, "map", ...(opts.readOnly ? ["--read-only"] : []), this.spec(image)], { signal: opts.signal, reject: false });
    if (r.exitCode !== 0) throw new Error(`Failed to map RBD volume "${this.spec(image)}": ${r.stderr.trim().split("\n").filter(Boolean).join("; ")}`);
    return r.stdout.trim();
  }

  /** Unmap every device of an image; nothing to do where none is mapped (or the kernel can't map). */
  async unmapAll(image: string, opts: SlowOpts = {}): Promise<void> {
    const r = await run("rbd", [...this.rbdArgs, "showmapped", "--format", "json"], { reject: false });
    if (r.exitCode !== 0) return;
    const mapped = (JSON.parse(r.stdout || "[]") as { pool: string; name: string; snap: string; device: string }[]).filter((m) => {
      const name = m.snap && m.snap !== "-" ? `${m.name}@${m.snap}` : m.name;
      return m.pool === this.client.osdPool && name === image;
    });
    for (const m of mapped) await this.rbd(["unmap", m.device], opts);
  }

  /** Unprotect (if protected) and remove one snapshot. */
  async removeSnapshot(image: string, snap: string, opts: SlowOpts = {}): Promise<void> {
    const s = (await this.snapshots(image)).find((x) => x.name === snap);
    if (!s) return;
    if (s.protected === "true") await this.rbd(["snap", "unprotect", this.spec(`${image}@${snap}`)], opts);
    await this.rbd(["snap", "rm", this.spec(`${image}@${snap}`)], opts);
  }

  /**
   * Remove an image as upstream does: an image whose snapshots still have clones is renamed
   * to a zombie (kept until its last clone goes), a snapshot with clones to a zombie snapshot.
   * Returns what happened.
   */
  async removeImage(image: string, zombieName: string, opts: SlowOpts = {}): Promise<"removed" | "zombie" | "absent"> {
    if (!(await this.exists(image))) return "absent";
    const snaps = await this.snapshots(image);
    let cloned = false;
    for (const s of snaps) if ((await this.children(`${image}@${s.name}`)).length > 0) cloned = true;
    if (cloned) {
      // Snapshots without clones go now; the ones holding clones stay with the zombie.
      for (const s of snaps) if ((await this.children(`${image}@${s.name}`)).length === 0) await this.removeSnapshot(image, s.name, opts);
      await this.rbd(["mv", this.spec(image), this.spec(zombieName)], opts);
      return "zombie";
    }
    for (const s of snaps) await this.removeSnapshot(image, s.name, opts);
    const parent = await this.parent(image);
    await this.rbd(["rm", "--no-progress", this.spec(image)], opts);
    if (parent) await this.reapZombieParent(parent, opts);
    return "removed";
  }

  /** Remove a snapshot; one with clones is renamed to a zombie snapshot instead. */
  async removeSnapshotOrZombie(image: string, snap: string, opts: SlowOpts = {}): Promise<"removed" | "zombie" | "absent"> {
    if (!(await this.snapshots(image)).some((s) => s.name === snap)) return "absent";
    if ((await this.children(`${image}@${snap}`)).length > 0) {
      await this.rbd(["snap", "rename", this.spec(`${image}@${snap}`), this.spec(`${image}@zombie_snapshot_${randomUUID().replace(/-/g, "")}`)], opts);
      return "zombie";
    }
    await this.removeSnapshot(image, snap, opts);
    return "removed";
  }

  /** After a clone went: drop its parent snapshot if it is a zombie without clones, and a zombie image left without snapshots. */
  private async reapZombieParent(parent: string, opts: SlowOpts): Promise<void> {
    const [image, snap] = parent.split("@", 2);
    if ((await this.children(parent)).length > 0) return;
    const zombieImage = image.startsWith("zombie_");
    if (snap.startsWith("zombie_") || zombieImage) await this.removeSnapshot(image, snap, opts);
    if (zombieImage && (await this.snapshots(image)).length === 0) await this.removeImage(image, image, opts);
  }
}
