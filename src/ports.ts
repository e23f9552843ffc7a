import type { ServerAddress } from "./images/remote/types.js";
import type { Requestor } from "./shared/requestor.js";
// The narrow interfaces feature modules use to reach each other. The daemon wires them once
// (daemon/features/index.ts): each service is handed the ports it declares, as values; a port whose
// provider is built after its consumer is late-bound there (daemon/late-port.ts), in that one place.
import type { ProfileRecord } from "./db/profile-repo.js";
import type { InstanceRuntime } from "./instances/runtime-port.js";
import type { Readable } from "node:stream";
import type { StagedStreams, StreamSink } from "./storage/drivers/types.js";

/** What every consumer needs to know about an image. */
export interface ImageRecord {
  fingerprint: string;
  type: "container" | "virtual-machine";
  architecture: string;
  properties: Record<string, string>;
  /** Profiles to apply when an instance is created from it (LXD: image.profiles). */
  profiles: string[];
  project: string;
}

export interface ImagesPort {
  /** Resolve an alias or a unique fingerprint prefix in a project; throws NotFound("Image not found"). */
  resolve(project: string, ref: { alias?: string; fingerprint?: string }): ImageRecord;
  /**
   * Unpack the image into `target` (an existing, empty directory), laid out as LXD lays
   * out an instance volume: rootfs/, metadata.yaml, templates/. Safe against hostile tarballs.
   */
  unpackInto(fingerprint: string, target: string, opts?: { signal?: AbortSignal; progress?: (percent: number) => void }): Promise<void>;
  /**
   * Pull an image from a remote server into `project` (or reuse the cached copy), marked
   * cached; resolves with the local image. `onMetadata` receives download progress.
   */
  pull(
    project: string,
    src: { server: string; protocol?: string; certificate?: string; secret?: string; project?: string; alias?: string; fingerprint?: string; type?: string },
    opts: { signal?: AbortSignal; onMetadata?: (patch: Record<string, unknown>) => void },
  ): Promise<ImageRecord>;
  /** Record that an image was used to create an instance (last_used_at). */
  markUsed(fingerprint: string): void;
  /**
   * The guest API's image export (LXD's imageExport for "@devlxd"): the image of `project`
   * matching the fingerprint prefix, public or cached ones only, written to `res` as GET
   * /1.0/images/{fp}/export sends it; a missing one is LXD's 404 error envelope.
   */
  exportForGuest(project: string, fingerprint: string, res: import("node:http").ServerResponse): Promise<void>;
}

export interface StoragePort {
  /** Throws NotFound("Storage pool not found") if the pool does not exist. */
  assertPool(pool: string): void;
  /**
   * Create an instance's root volume on `pool` (from an image when given) and return the
   * volume's mount path, which holds rootfs/, metadata.yaml and templates/.
   */
  createInstanceVolume(
    project: string,
    pool: string,
    name: string,
    opts: { image?: string; signal?: AbortSignal; progress?: (percent: number) => void; size?: string },
  ): Promise<string>;
  /** `lxd recover`: records for a volume and its snapshots found on disk; returns its mount path. */
  adoptVolume(
    pool: string,
    project: string,
    type: "container" | "custom",
    name: string,
    vol: { description: string; config: Record<string, string> },
    snapshots: { name: string; description: string; config: Record<string, string> }[],
  ): Promise<string>;
  /** A member that joined a cluster brings up the cluster's pools here; returns the local sources chosen. */
  adoptPools(): Promise<Record<string, string>>;
  /** A first cluster member: its volumes on pools that are not shared become its own. */
  claimLocalVolumes(member: string): void;
  /** Apply the root disk's `size` to the instance volume (a quota where the driver has one; "" lifts it). */
  setInstanceVolumeQuota(project: string, pool: string, name: string, size: string): Promise<void>;
  /** Mount path of an existing instance volume (mounting it first if the driver needs to). */
  mountInstanceVolume(project: string, pool: string, name: string): Promise<string>;
  renameInstanceVolume(project: string, pool: string, from: string, to: string): Promise<void>;
  deleteInstanceVolume(project: string, pool: string, name: string): Promise<void>;
  /** Bytes used by the volume, when the driver can tell cheaply. */
  instanceVolumeUsage(project: string, pool: string, name: string): Promise<number | undefined>;
  /** Host path of a custom volume, for disk devices (pool=P source=VOL); throws NotFound. */
  mountCustomVolume(pool: string, project: string, name: string): Promise<string>;
  /** A custom volume's config (security.unmapped decides how disks attach it); throws NotFound. */
  customVolumeConfig(pool: string, project: string, name: string): Record<string, string>;
  /** A custom volume's content type ("filesystem" or "block"), or undefined when there is no such volume. */
  customVolumeContentType?(pool: string, project: string, name: string): string | undefined;
  /** Drop an image's cached volumes from every pool (call when the image is deleted). */
  deleteImageVolumes(fingerprint: string): Promise<void>;
  /** Instance snapshots: volumes "<name>/<snapshot>" of the instance's pool (optional: drivers that can). */
  createInstanceSnapshot(project: string, pool: string, name: string, snapshot: string, opts?: { signal?: AbortSignal; place?: () => Promise<void> }): Promise<void>;
  /** Idempotent: a snapshot volume already gone is not an error. */
  deleteInstanceSnapshot(project: string, pool: string, name: string, snapshot: string): Promise<void>;
  renameInstanceSnapshot(project: string, pool: string, name: string, from: string, to: string): Promise<void>;
  /** Replace the (stopped) instance volume's content with the snapshot's. */
  restoreInstanceSnapshot(project: string, pool: string, name: string, snapshot: string, opts?: { signal?: AbortSignal }): Promise<void>;
  /** Make an instance volume an exact copy of the tree at `source` (copies, refreshes; the pool's rsync.bwlimit applies). */
  syncInstanceVolume(project: string, pool: string, name: string, source: string, opts?: { signal?: AbortSignal }): Promise<void>;
  /**
   * Copy an instance volume (or its snapshot) to `target`, a new path outside the pool, through
   * the pool's driver (hard links when `link` and the caller only reads, reflinks, a copy).
   */
  exportInstanceVolume(project: string, pool: string, name: string, snapshot: string | undefined, target: string, opts?: { link?: boolean; signal?: AbortSignal }): Promise<void>;
  /** Path of a snapshot volume, to read from (copies, publish). */
  mountInstanceSnapshot(project: string, pool: string, name: string, snapshot: string): Promise<string>;
  /** An instance volume's (or its snapshot volume's) description and config, for copies and migrations. */
  instanceVolumeConfig(project: string, pool: string, name: string, snapshot?: string): { description: string; config: Record<string, string> };
  /** Set an instance volume's (or its snapshot volume's) description and config as a copy or migration brought them. */
  setInstanceVolumeConfig(project: string, pool: string, name: string, snapshot: string | undefined, vol: { description: string; config: Record<string, string> }): void;
  /** The pool as GET /1.0/storage-pools/NAME shows it (backup index.yaml); throws NotFound. */
  getPool(name: string): { name: string; driver: string };
  /** The pool driver's optimized stream type ("btrfs"), undefined when rsync only. */
  instanceStreamType(pool: string): string | undefined;
  /** Optimized send of an instance volume and its snapshots (the driver's streams; see storage/drivers/types.ts). */
  sendInstanceStreams(project: string, pool: string, name: string, snapshots: string[], out: StreamSink, opts?: { signal?: AbortSignal }): Promise<void>;
  /** Optimized receive into an instance volume's pool: staged, checked, placed by the caller. */
  receiveInstanceStreams(project: string, pool: string, name: string, snapshots: string[], next: (snapshot: string | undefined) => Readable | Promise<Readable>, opts?: { signal?: AbortSignal }): Promise<StagedStreams>;
}

export type { ProfileRecord };

export interface ProfilesPort {
  /** Throws NotFound("Profile not found"). */
  get(project: string, name: string): ProfileRecord;
  /** URLs (/1.0/profiles/NAME[?project=P]) of profiles whose devices reference a network or pool. */
  referencing(ref: { network?: string; pool?: string }, project?: string): string[];
  /** Give a project its own (empty) `default` profile: call when a project with features.profiles=true is created. */
  ensureDefaultProfile(project: string): void;
  /** Forget a project's profiles (the project is being deleted). */
  deleteProjectProfiles(project: string): void;
}

/** Who uses what, for `used_by` lists and refusing deletes of things in use. */
export interface InstancesPort {
  /** Whether the database has the instance. */
  instanceExists(project: string, name: string): boolean;
  /** `lxd recover`: what a backup.yaml needs that is missing (LXD's DependencyErrors). */
  recoverDependencies(project: string, backup: Record<string, unknown>): string[];
  /** `lxd recover`: recreate an instance's records from its backup.yaml (its volume is on `pool`). */
  recoverInstance(pool: string, project: string, name: string, backup: Record<string, unknown>): Promise<void>;
  /** URLs (/1.0/instances/NAME[?project=P]) of instances referencing the object. */
  usedBy(ref: { profile?: string; pool?: string; network?: string; image?: string }, project?: string): string[];
  /** Host interfaces instances on this member hold: devices' `parent` and volatile `host_name` (LXD's SRIOVGetHostDevicesInUse, instances part). */
  hostInterfacesInUse(): string[];
  /** Instances' NICs on a network, with their MAC (configured, else volatile): SLAAC addresses in leases. */
  nicsOn(network: string): { instance: string; hwaddr: string }[];
  /** URLs of instances with a disk device attaching custom volume `volume` of `pool` (optional; storage used_by). */
  volumeUsedBy(pool: string, project: string, volume: string): string[];
  /** Containers attaching custom volume `volume` of `pool`, with the host ids their root maps to (current map if running, next otherwise). */
  volumeUserRoots(pool: string, project: string, volume: string): { name: string; uid: number; gid: number; running?: boolean }[];
  /** URLs of running instances attaching custom volume `volume` of `pool` (restores refuse while there are any). */
  runningVolumeUsers(pool: string, project: string, volume: string): string[];
  /** Stop the instance if needed and give the caller its volume directory to read (publish). */
  /** `unshift`: host id -> id inside, for packing host-neutral owners (absent: the files are neutral already). */
  exportForPublish(project: string, name: string): Promise<{ dir: string; architecture: string; release(): Promise<void>; unshift?: { uid(host: number): number | undefined; gid(host: number): number | undefined } }>;
  /**
   * Exec/console/file access to an instance. Throws NotFound("Instance not found").
   * (Not `runtime`: the instances service already has a `runtime` member.)
   */
  runtimeOf(project: string, name: string): InstanceRuntime;
  /** Running instances (optionally of one project), for metrics and the guest API. */
  running(project?: string): { project: string; name: string; pid: number; config: Record<string, string>; devices: Record<string, Record<string, string>>; volumePath: string }[];
  /** Refuse a profile change that pulls the root disk from under an instance relying on it. */
  checkProfileChange(profileProject: string, before: ProfileRecord, after: ProfileRecord): void;
  /** After a profile change is saved: revalidate its users and apply it to running ones. */
  applyProfileChange(profileProject: string, before: ProfileRecord): Promise<void>;
  /** expires_at of an instance snapshot (storage API's volume snapshot view); undefined if unknown. */
  snapshotExpiry(project: string, name: string, snapshot: string): string | undefined;
  /** Status of each instance that lives on this member ("project/name" → "Running", ...). */
  localStatuses(): Record<string, string>;
}

export interface NetworksPort {
  /** Throws NotFound("Network not found"). Returns the host bridge/interface name and its type. */
  get(project: string, name: string): { name: string; type: string; config: Record<string, string> };
  /** Static DHCP allocations for an instance NIC (ipv4.address/ipv6.address/hwaddr), applied to dnsmasq. */
  setStaticLease(network: string, instance: string, hwaddr: string, ipv4?: string, ipv6?: string, device?: string): Promise<void>;
  removeStaticLease(network: string, instance: string, device?: string): Promise<void>;
  /** LXD's dhcpalloc for an IP-filtered NIC: the addresses to allow ("none": drop the family), written as its static lease. */
  allocateFilterAddresses(
    network: string,
    instance: string,
    device: string,
    host: { hwaddr: string; ipv4?: string; ipv6?: string },
    want: { ipv4: boolean; ipv6: boolean },
  ): Promise<{ ipv4?: string; ipv6?: string }>;
  /** The project whose networks an instance or profile of `project` uses (features.networks). */
  projectOf(project: string): string;
  /** Host interfaces created managed networks (any project) name as `parent`: not free for SR-IOV (LXD's SRIOVGetHostDevicesInUse, networks part). */
  parentsInUse(): string[];
  /** Whether the network's bridge is an Open vSwitch bridge (NICs attach with ovs-vsctl). */
  isOvs(project: string, name: string): boolean;
  /** BGP: advertise a NIC's ipv4/ipv6.routes.external under `owner` (replacing what it had). */
  advertiseNicRoutes(network: string, owner: string, nic: Record<string, string>): Promise<void>;
  withdrawNicRoutes(owner: string): Promise<void>;
}

/** The BGP speaker's listener (core.bgp_address, core.bgp_asn, core.bgp_routerid). */
export interface BgpPort {
  reconfigure(address: string, asn: number, routerId: string): Promise<void>;
}

/**
 * Project features (features.images=false etc.): which project's objects a request in
 * `project` actually uses. Provided by the projects feature; absent means "the same project".
 */
export interface ProjectsPort {
  effectiveProject(project: string, feature: "images" | "profiles" | "storage.volumes" | "networks"): string;
  /** A project's config (limits.*, restricted.*), or undefined when there is no such project. */
  projectConfig(project: string): Record<string, string> | undefined;
  /**
   * Project restrictions and limits (LXD's lxd/project/permissions.go). Each throws LXD's
   * error (a 500, as LXD answers) when the change would break the project's restricted.* or
   * limits.* keys; instances are checked with their profiles applied.
   */
  allowInstanceCreation(project: string, draft: InstanceDraft, strip: boolean): void;
  allowInstanceUpdate(project: string, draft: InstanceDraft, currentConfig: Record<string, string>): void;
  allowProfileUpdate(project: string, profile: { name: string; config: Record<string, string>; devices: Record<string, Record<string, string>> }, creating?: boolean): void;
  allowSnapshotCreation(project: string): void;
  /** GetImageSpaceBudget: bytes the project may still use for images (limits.disk), -1 when unlimited. */
  imageSpaceBudget(project: string): number;
  /** limits.disk over custom volumes (which must then set `size`). */
  allowVolumeCreation(project: string, volume: string, config: Record<string, string>): void;
  allowVolumeUpdate(project: string, volume: string, config: Record<string, string>): void;
  allowBackupCreation(project: string): void;
  /** Whether a (restricted) project may see and use a network. */
  networkAllowed(project: string, network: string, managed: boolean): boolean;
  /** restricted.devices.disk.paths: throws when a disk's host source is outside them; the allowed parent, or undefined when unrestricted. */
  restrictedDiskParent(project: string, device: string, config: Record<string, string>): string | undefined;
}

/** An instance about to be created or changed, as the project checks see it (before profile expansion). */
export interface InstanceDraft {
  name: string;
  type: string;
  config: Record<string, string>;
  devices: Record<string, Record<string, string>>;
  profiles: string[];
}

/** The authoritative DNS listener (core.dns_address), provided by the networks feature. */
export interface DnsPort {
  setAddress(address: string): Promise<void>;
}

/** Something snapshots.schedule applies to (an instance, a custom volume). */
export interface ScheduledSubject {
  /** Stable key of the subject for the run record ("instance:12", "volume:7"). */
  key: string;
  /** Numeric id, fixing the minute and hour of @hourly/@daily/... for this subject. */
  id: number;
  /** The snapshots.schedule value. */
  schedule: string;
  /** The member the subject lives on (its snapshots are taken there); absent: the cluster leader takes them. */
  member?: string;
  /** Take the scheduled snapshot (name from snapshots.pattern, expiry from snapshots.expiry). */
  take(): Promise<void>;
}

/** A feature whose objects take scheduled snapshots (read by the snapshot scheduler every minute). */
export interface SnapshotScheduleSource {
  /** Subjects with a schedule that may run now (e.g. instances stopped without snapshots.schedule.stopped left out). */
  scheduled(): ScheduledSubject[];
  /** Delete snapshots whose expires_at has passed. */
  pruneExpired(): Promise<void>;
  /** pruneExpired deletes only what lives on this member (so every member runs it); else only the leader does. */
  prunesOwn?: boolean;
}

/** Every port, each always present once the daemon has wired it; a service takes the few it needs (`Pick<Ports, ...>`). */
export interface Ports {
  images: ImagesPort;
  storage: StoragePort;
  profiles: ProfilesPort;
  instances: InstancesPort;
  networks: NetworksPort;
  projects: ProjectsPort;
  cluster: ClusterPort;
}

/** What other features ask of clustering (absent or inert on a standalone daemon). */
export interface ClusterPort {
  clustered(): boolean;
  /** This member's name ("" standalone). */
  name(): string;
  /** This member's own `source` for a pool, when it differs from the pool's shared config. */
  poolSource(pool: string): string | undefined;
  /** Every member's name (clustered only). */
  memberNames(): Promise<string[]>;
  /** Ask member `name` to do its own part of a cluster-wide change; resolves with the reply's metadata. */
  notifyMember(name: string, method: string, path: string, body?: unknown): Promise<unknown>;
  /**
   * The recursion=2 views of the instances other online members hold, asked of each member at
   * once for its own only (`query`: the list's project or all-projects), on behalf of `who`.
   * A member that does not answer is missing from the map.
   */
  remoteInstances(query: string, who: Requestor): Promise<Map<string, Record<string, unknown>[]>>;
  /** The status of an instance that lives on another member (from that member's reports). */
  remoteStatus(project: string, name: string, node: string): string | undefined;
  /** The other online members as LXD image servers (the cluster certificate pinned and presented). */
  imagePeers(): Promise<ServerAddress[]>;
  /** Whether this member runs leader-only background tasks (true standalone). */
  leads(): boolean;
  /** Whether work on an object living on member `node` runs here (true standalone). */
  owns(node: string): boolean;
  /** Whether this daemon is a cluster member: known from its own database at start, before it is back in the cluster. */
  isMember(): boolean;
  /**
   * Once this member is back in the cluster (a feature's ready()): settle its own crash
   * leftovers in the global tables in the background, under the write lock; `here` tells its
   * own objects by their member. Nothing on a standalone daemon.
   */
  settleLeftovers(what: string, fn: (here: (node: string) => boolean) => Promise<void>): void;
  /** Claim a scheduled run of `subject` for `minute` cluster-wide (first claim wins). */
  claimRun(subject: string, minute: number): Promise<boolean>;
  /** Run background work that writes global state under the cluster write lock (at once standalone). */
  withWriteLock<T>(fn: () => Promise<T>): Promise<T>;
  /** Be told which global tables another member's writes changed (once they are in this member's replica). */
  onReplicated(fn: (tables: Set<string>) => void): void;
  /** Be told when this member starts (true) or stops (false) leading. */
  onLeadership(fn: (leading: boolean) => void): void;
  /** Requests to other members' APIs as the cluster (moving instances between members). */
  peers(): ClusterPeers;
}

/** Another member's API, as this member reaches it with the cluster certificate. */
export interface ClusterPeers {
  /** The certificate (PEM) every member presents: a migration sink pins it. */
  certificate(): string;
  /** Member `name`'s API url; NotFound("Cluster member not found"). */
  url(name: string): Promise<string>;
  /** Member `name`'s status (Online, Offline, Evacuated); NotFound("Cluster member not found"). */
  status(name: string): Promise<string>;
  /** Mark member `name` evacuated (or not): the scheduler leaves it out meanwhile. */
  markEvacuated(name: string, evacuated: boolean): Promise<void>;
  /** The member the scheduler picks (online, not evacuated, fewest instances), if any. */
  schedule(): Promise<string | undefined>;
  /**
   * A JSON request to member `name`; an operation it starts is waited for (its metadata passed to
   * `progress` meanwhile). Resolves with the (operation's) metadata; throws with the member's error.
   */
  call(name: string, method: string, path: string, body?: unknown, progress?: (m: Record<string, unknown>) => void): Promise<any>;
}
