// The feature modules the daemon loads, wired here once, in start order (stopped in reverse).
// Each feature is handed the ports it uses as values. Four ports are needed before their
// provider is built (storage asks instances what uses a volume; profiles, projects and networks
// ask each other and instances): those consumers get a late-bound stand-in (late-port.ts),
// bound right after the provider is built, so every port is in place before any feature starts.
import type { Core, Feature } from "../feature.js";
import { latePort } from "../late-port.js";
import type { ClusterPort, InstancesPort, NetworksPort, Ports, ProfilesPort, ProjectsPort, StoragePort } from "../../ports.js";
import type { DnsServer } from "../../network/zones/dns-server.js";
import type { BgpSpeaker } from "../../network/bgp/speaker.js";
import { DevlxdFeature } from "./devlxd.js";
import { HardwareEventsFeature } from "./hardware-events.js";
import { ImagesFeature } from "./images.js";
import { MetricsFeature } from "./metrics.js";
import { InstanceAccessFeature } from "./instance-access.js";
import { InstancesFeature } from "./instances.js";
import type { Evacuation } from "../../migration/evacuation.js";
import { NetworksFeature } from "./networks.js";
import { ProfilesFeature } from "./profiles.js";
import { ProjectsFeature } from "./projects.js";
import { SnapshotScheduleFeature } from "./snapshot-schedule.js";
import { StorageFeature } from "./storage.js";
import type { DaemonStorage } from "../../storage/daemon-storage.js";

export interface Wiring {
  /** In start order. */
  features: Feature[];
  /** Every port, as the features see them. */
  ports: Ports;
  /** The authoritative DNS listener (core.dns_address). */
  dns: DnsServer;
  /** The BGP speaker (core.bgp_*). */
  bgp: BgpSpeaker;
  /** storage.backups_volume / storage.images_volume. */
  daemonStorage: DaemonStorage;
  /** Evacuating and restoring this cluster member. */
  evacuation: Evacuation;
}

export function wireFeatures(core: Core, cluster: ClusterPort): Wiring {
  const instances = latePort<InstancesPort>("instances");
  const profiles = latePort<ProfilesPort>("profiles");
  const projects = latePort<ProjectsPort>("projects");
  const networks = latePort<NetworksPort>("networks");
  const storagePort = latePort<StoragePort>("storage");

  const images = new ImagesFeature(core, { cluster, projects: projects.port, profiles: profiles.port, instances: instances.port, storage: storagePort.port });
  const storage = new StorageFeature(core, { cluster, images: images.port, instances: instances.port, projects: projects.port });
  storagePort.bind(storage.port);
  const profilesFeature = new ProfilesFeature(core, { instances: instances.port, projects: projects.port, networks: networks.port });
  profiles.bind(profilesFeature.service);
  const projectsFeature = new ProjectsFeature(core, { profiles: profilesFeature.service, networks: networks.port });
  projects.bind(projectsFeature.service);
  const networksFeature = new NetworksFeature(core, { cluster, instances: instances.port, profiles: profilesFeature.service, projects: projectsFeature.service });
  networks.bind(networksFeature.service.port);
  // Before instances: containers started at boot bind-mount its socket directory.
  const devlxd = new DevlxdFeature(core, { instances: instances.port, images: images.port });
  // Before instances: adopted usb/unix-hotplug devices register for its events.
  const hardware = new HardwareEventsFeature(core);
  const others = { cluster, images: images.port, storage: storage.port, profiles: profilesFeature.service, projects: projectsFeature.service, networks: networksFeature.service.port };
  const instancesFeature = new InstancesFeature(core, others);
  instances.bind(instancesFeature.service);
  const access = new InstanceAccessFeature(core, instancesFeature.service);
  const scheduler = new SnapshotScheduleFeature(core, { cluster, sources: [storage.scheduleSource, instancesFeature.scheduleSource] });
  const metrics = new MetricsFeature(core, instancesFeature.service);

  return {
    // Storage before images: the pools and the storage.images_volume volume are mounted before the image store is touched.
    features: [storage, images, profilesFeature, projectsFeature, networksFeature, devlxd, hardware, instancesFeature, access, scheduler, metrics],
    ports: { ...others, instances: instancesFeature.service },
    dns: networksFeature.dns,
    bgp: networksFeature.bgp,
    evacuation: instancesFeature.evacuation,
    daemonStorage: storage.daemonStorage,
  };
}
