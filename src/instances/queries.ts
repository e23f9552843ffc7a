// The instances port's read side and publish export (InstancesPort): which instances use an
// object, the running ones, the narrow runtime view exec/console/files get, and a volume to
// publish. Split from the service so the service keeps the rules and the writes.
import { randomUUID } from "node:crypto";
import { rmSync } from "node:fs";
import { join } from "node:path";
import type { InstancesPort } from "../daemon/ports.js";
import type { InstanceRow } from "../db/instance-repo.js";
import { parseIdmapJson, toHost, toNs, type IdmapEntry } from "./idmap.js";
import { initOf, instanceUrl, type Expanded } from "./rows.js";
import { identityIdMap, type IdMap, type InstanceRuntime as PortRuntime } from "./runtime-port.js";
import type { InstanceOwner } from "./model.js";
import type { SnapshotService } from "./snapshots.js";

export function instanceQueries(svc: InstanceOwner, snapshots: () => SnapshotService) {
  const expandedOrOwn = (row: InstanceRow): Expanded => {
    try {
      return svc.expanded(row);
    } catch {
      return { config: row.config, devices: row.devices };
    }
  };
  const where = (match: (row: InstanceRow, ex: Expanded) => boolean, project?: string): string[] =>
    svc.repo
      .list(project)
      .filter((row) => match(row, expandedOrOwn(row)))
      .map((row) => instanceUrl(row.project, row.name));
  const attaches = (ex: Expanded, pool: string, volume: string) => Object.values(ex.devices).some((d) => d.type === "disk" && d.pool === pool && d.source === volume && d.path !== "/");

  /**
   * `lxc publish c1/snap0`: snapshots are read-only, so a copy of the snapshot is shifted back to
   * host-neutral ownership. It lives in the images directory as a ".build-" entry, which the
   * images feature sweeps at start if a crash leaves it behind.
   */
  const exportSnapshot = async (project: string, ref: string) => {
    const src = await snapshots().copySource(project, ref);
    const dir = join(svc.deps.paths.images, `.build-${randomUUID()}`);
    const release = async () => rmSync(dir, { recursive: true, force: true });
    try {
      await src.exportTo(dir);
    } catch (e) {
      await release();
      throw e;
    }
    return { dir, architecture: src.snapshot.architecture, release, unshift: unshiftOf(src.snapshot.config["volatile.last_state.idmap"]) };
  };

  return {
    usedBy(ref: { profile?: string; pool?: string; network?: string; image?: string }, project?: string): string[] {
      return where(
        (row, ex) =>
          (ref.profile !== undefined && row.profiles.includes(ref.profile)) ||
          (ref.pool !== undefined && Object.values(ex.devices).some((d) => d.type === "disk" && d.pool === ref.pool)) ||
          (ref.network !== undefined && Object.values(ex.devices).some((d) => d.type === "nic" && (d.network === ref.network || d.parent === ref.network))) ||
          (ref.image !== undefined && row.config["volatile.base_image"] === ref.image),
        project,
      );
    },

    nicsOn(network: string) {
      const out: { instance: string; hwaddr: string }[] = [];
      for (const row of svc.repo.list()) {
        const ex = expandedOrOwn(row);
        for (const [dev, d] of Object.entries(ex.devices)) {
          if (d.type !== "nic" || (d.network !== network && d.parent !== network)) continue;
          const hwaddr = d.hwaddr || row.config[`volatile.${dev}.hwaddr`];
          if (hwaddr) out.push({ instance: row.name, hwaddr });
        }
      }
      return out;
    },

    hostInterfacesInUse() {
      const out = new Set<string>();
      for (const row of svc.repo.list()) {
        for (const [dev, d] of Object.entries(expandedOrOwn(row).devices)) {
          if (d.parent) out.add(d.parent);
          const hostName = row.config[`volatile.${dev}.host_name`];
          if (hostName) out.add(hostName);
        }
      }
      return [...out];
    },

    /** Instances with a disk device attaching the custom volume. */
    volumeUsedBy: (pool: string, project: string, volume: string) => where((_row, ex) => attaches(ex, pool, volume), project),

    /** Running instances with a disk device attaching the custom volume. */
    runningVolumeUsers: (pool: string, project: string, volume: string) => where((row, ex) => svc.runtime.isRunning(row) && attaches(ex, pool, volume), project),

    /** Running instances with their expanded config and devices. */
    running(project?: string) {
      return svc.repo
        .list(project)
        .filter((row) => svc.runtime.isRunning(row))
        .map((row) => {
          const ex = expandedOrOwn(row);
          return { project: row.project, name: row.name, pid: row.init_pid, config: ex.config, devices: ex.devices, volumePath: svc.runtime.driver.rootfs(row) };
        });
    },

    /** The narrow view exec, console and file transfer need. */
    runtimeOf(project: string, name: string): PortRuntime {
      const row = svc.require(project, name);
      const ex = svc.expanded(row).config;
      const status = svc.runtime.status(row);
      // Ownership as the files carry it: the map the container runs with, or (stopped) the one
      // its rootfs is shifted to ("[]" until the first start shifts it).
      const onDisk = status === "Stopped" ? row.config["volatile.last_state.idmap"] : undefined;
      const map = parseIdmapJson(onDisk ?? row.config["volatile.idmap.current"] ?? row.config["volatile.idmap.next"]);
      const environment: Record<string, string> = {};
      for (const [k, v] of Object.entries(ex)) if (k.startsWith("environment.")) environment[k.slice("environment.".length)] = v;
      const running = status !== "Stopped";
      return {
        project,
        name,
        running,
        frozen: status === "Frozen",
        pid: running ? row.init_pid : undefined,
        attach: svc.runtime.driver.attach({ project, name }, running ? initOf(row) : undefined),
        logDir: svc.runtime.driver.logDir({ project, name }),
        idmap: map.length === 0 ? identityIdMap : idMapOf(map),
        environment,
      };
    },

    snapshotExpiry(project: string, name: string, snapshot: string): string | undefined {
      const row = svc.repo.get(project, name);
      return row ? snapshots().repo.get(row.id, snapshot)?.expiresAt : undefined;
    },

    async exportForPublish(project: string, name: string): ReturnType<InstancesPort["exportForPublish"]> {
      if (name.includes("/")) return exportSnapshot(project, name);
      const row = svc.require(project, name);
      const wasRunning = svc.runtime.isRunning(row);
      if (wasRunning) await svc.runtime.stop(project, name, { force: false, timeout: 30 });
      const dir = await svc.volumeDir(row);
      // Images hold host-neutral ownership: the tarball is packed through the map, the rootfs
      // stays as it is on disk (as LXD; security.protection.shift forbids shifting it).
      return {
        dir,
        architecture: row.architecture,
        unshift: unshiftOf(svc.require(project, name).config["volatile.last_state.idmap"]),
        release: async () => {
          if (wasRunning) await svc.runtime.start(project, name);
        },
      };
    },
  };
}

/** Host id -> id inside through an on-disk map ("[]" or absent: the files are neutral already). */
function unshiftOf(json: string | undefined): { uid(host: number): number | undefined; gid(host: number): number | undefined } | undefined {
  const map = parseIdmapJson(json);
  if (map.length === 0) return undefined;
  return { uid: (h) => toNs(map, "uid", h), gid: (h) => toNs(map, "gid", h) };
}

/** An id map as the exec/file side uses it (-1 for unmapped ids). */
function idMapOf(map: IdmapEntry[]): IdMap {
  return {
    uid: (u) => toHost(map, "uid", u) ?? -1,
    gid: (g) => toHost(map, "gid", g) ?? -1,
    reverseUid: (u) => toNs(map, "uid", u) ?? -1,
    reverseGid: (g) => toNs(map, "gid", g) ?? -1,
  };
}
