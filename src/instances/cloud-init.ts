// When LXD gives an instance a new volatile.cloud-init.instance-id (so cloud-init runs again):
// a change of a cloud-init config key, or of the set of NIC names (driver_common.go,
// needsNewInstanceID); a rename resets it too.
type Devices = Record<string, Record<string, string>>;

const CLOUD_INIT_KEYS = ["cloud-init.vendor-data", "cloud-init.user-data", "cloud-init.network-config", "user.vendor-data", "user.user-data", "user.network-config"];

function nicNames(devices: Devices, localConfig: Record<string, string>): string[] {
  const names: string[] = [];
  for (const [devName, dev] of Object.entries(devices)) {
    if (dev.type !== "nic") continue;
    if (dev.name) names.push(dev.name);
    // LXD appends the (empty) device name here when a volatile name exists; kept as LXD does.
    else if (localConfig[`volatile.${devName}.name`]) names.push(dev.name ?? "");
    else names.push(devName);
  }
  return names;
}

export function needsNewInstanceId(
  before: { config: Record<string, string>; devices: Devices },
  after: { config: Record<string, string>; devices: Devices },
  localConfig: Record<string, string>,
): boolean {
  if (CLOUD_INIT_KEYS.some((k) => (before.config[k] ?? "") !== (after.config[k] ?? "") || (k in before.config) !== (k in after.config))) return true;
  const oldNames = nicNames(before.devices, localConfig);
  const newNames = nicNames(after.devices, localConfig);
  return oldNames.some((n) => !newNames.includes(n)) || newNames.some((n) => !oldNames.includes(n));
}
