// The API extensions nodelxd implements, in upstream's order. Append only: a name is
// added in the change that makes it true, never before.
export const apiExtensions: string[] = [
  "etag",
  "patch",
  "operation_description",
  "event_lifecycle",
  "event_location",
  "kernel_features",
  "lxc_features",
  "api_os",
  "warnings",
  "event_project",
  "event_hub",
  "profile_usedby",
  "storage",
  "storage_rsync_bwlimit",
  "storage_volatile_initial_source",
  "resources",
  "storage_unmapped",
  "storage_shifted",
  "storage_rsync_compression",
  "server_supported_storage_drivers",
];
