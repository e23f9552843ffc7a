// A profile changed under the instances that use it (LXD's doProfileUpdate): the root disk
// they rely on may not be pulled from under them, and each instance is revalidated with the
// new profile and, when running, given the change live.
import { InternalError } from "../shared/errors.js";
import type { ProfileRecord } from "../ports.js";
import type { InstanceRow } from "../db/instance-repo.js";
import { expand } from "./names.js";
import type { InstanceOwner } from "./model.js";

type Devices = Record<string, Record<string, string>>;

const rootDisk = (devices: Devices): [string, Record<string, string>] | undefined =>
  Object.entries(devices).find(([, d]) => d.type === "disk" && d.path === "/" && !d.source);

export class ProfileChange {
  constructor(private readonly svc: InstanceOwner) {}

  private profiles() {
    return this.svc.deps.ports.profiles;
  }

  /** Instances (of any project) whose profile list resolves `name` to the profile project's. */
  users(profileProject: string, name: string): InstanceRow[] {
    const profilesOf = (project: string) => this.svc.deps.ports.projects.effectiveProject(project, "profiles") ?? project;
    return this.svc.repo.list(undefined).filter((row) => row.profiles.includes(name) && profilesOf(row.project) === profileProject);
  }

  /**
   * Refuse a change of the profile's root disk pool (or its removal) while an instance takes
   * its root disk from this profile: not overridden locally and not by a later profile.
   */
  checkRootDisk(profileProject: string, before: ProfileRecord, after: ProfileRecord): void {
    const old = rootDisk(before.devices);
    const next = rootDisk(after.devices);
    if ((old?.[1].pool ?? "") === (next?.[1].pool ?? "")) return;
    if (!old) return;
    for (const row of this.users(profileProject, before.name)) {
      const local = rootDisk(row.devices);
      if (local && local[1].pool) continue;
      for (const p of [...row.profiles].reverse()) {
        const devices = p === before.name ? before.devices : this.profiles().get(row.project, p).devices;
        if (!(old[0] in devices)) continue;
        if (p === before.name) throw new InternalError("At least one instance relies on this profile's root disk device");
        break;
      }
    }
  }

  /** Validate one user of the changed profile and apply the change to it if it runs. */
  async apply(row: InstanceRow, before: ProfileRecord): Promise<void> {
    await this.svc.runtime.serialize(row.project, row.name, async () => {
      const current = this.svc.require(row.project, row.name);
      this.svc.validate(current.project, current.name, current.config, current.devices, current.profiles, true);
      const layers = current.profiles.map((p) => (p === before.name ? before : this.profiles().get(current.project, p)));
      const was = { config: expand<string>([...layers.map((p) => p.config), current.config]), devices: expand<Record<string, string>>([...layers.map((p) => p.devices), current.devices]) };
      await this.svc.runtime.applyLive(current, was, this.svc.expanded(current));
    });
  }

  /**
   * After the profile is saved: every user revalidated and updated; failures are gathered
   * into LXD's message (the profile change stays saved, as LXD's does).
   */
  async applyAll(profileProject: string, before: ProfileRecord): Promise<void> {
    const failures: string[] = [];
    for (const row of this.users(profileProject, before.name)) {
      try {
        await this.apply(row, before);
      } catch (e) {
        failures.push(` - Project: ${row.project}, Instance: ${row.name}: ${(e as Error).message}\n`);
      }
    }
    if (failures.length) throw new InternalError(`The following instances failed to update (profile change still saved):\n${failures.join("")}`);
  }
}
