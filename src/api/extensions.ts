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
  "directory_manipulation",
  "container_exec_recording",
  "container_exec_signal_handling",
  "file_delete",
  "file_append",
  "file_symlinks",
  "file_get_symlink",
  "container_exec_user_group_cwd",
  "instance_file_head",
];
