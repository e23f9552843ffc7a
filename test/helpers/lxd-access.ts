// LXD 5.0.2's access rules, transcribed from its endpoint table (lxd/*.go `APIEndpoint{...}`:
// AllowUntrusted, AccessHandler allowAuthenticated / allowProjectPermission, none = admin) and
// the checks its handlers make. Paths as nodelxd declares them, parameters written `{}`.
// This is the test's independent oracle: the router's own declarations are checked against it.
//
//   open          `/`: LXD's mux root answers ["/1.0"] to anyone, any method
//   untrusted     AllowUntrusted (GET/POST only)
//   public        AllowUntrusted, handler serves restricted callers outside the project as untrusted (images)
//   authenticated allowAuthenticated
//   project       allowProjectPermission(feature, permission)
//   admin         no AccessHandler (and PUT/PATCH /1.0/projects/{}: "manage-projects", which restricted certificates lack)
//   local         /internal: unix socket only
export type LxdAccess = "open" | "untrusted" | "public" | "authenticated" | "project" | "admin" | "local";
type Table = Record<string, Partial<Record<"GET" | "PUT" | "PATCH" | "POST" | "DELETE" | "HEAD", LxdAccess>>>;

const P = "project" as const;
const all = (a: LxdAccess) => ({ GET: a, PUT: a, PATCH: a, POST: a, DELETE: a, HEAD: a });

const instanceRoutes = (base: string): Table => ({
  [base]: { GET: P, POST: P, PUT: P },
  [`${base}/{}`]: { GET: P, PUT: P, PATCH: P, POST: P, DELETE: P },
  [`${base}/{}/state`]: { GET: P, PUT: P },
  [`${base}/{}/logs`]: { GET: P },
  [`${base}/{}/logs/{}`]: { GET: P, DELETE: P },
  [`${base}/{}/console`]: { GET: P, POST: P, DELETE: P },
  [`${base}/{}/exec`]: { POST: P },
  [`${base}/{}/files`]: { GET: P, HEAD: P, POST: P, DELETE: P },
  [`${base}/{}/sftp`]: { GET: P },
  [`${base}/{}/metadata`]: { GET: P, PUT: P, PATCH: P },
  // nodelxd also accepts PUT for a template upload (the same project permission as POST).
  [`${base}/{}/metadata/templates`]: { GET: P, POST: P, PUT: P, DELETE: P },
  [`${base}/{}/snapshots`]: { GET: P, POST: P },
  [`${base}/{}/snapshots/{}`]: { GET: P, PUT: P, PATCH: P, POST: P, DELETE: P },
  [`${base}/{}/backups`]: { GET: P, POST: P },
  [`${base}/{}/backups/{}`]: { GET: P, POST: P, DELETE: P },
  [`${base}/{}/backups/{}/export`]: { GET: P },
});

export const LXD_ACCESS: Table = {
  "/": all("open"),
  "/1.0": { GET: "untrusted", PUT: "admin", PATCH: "admin" },
  "/1.0/certificates": { GET: "authenticated", POST: "untrusted" },
  "/1.0/certificates/{}": { GET: "authenticated", PUT: "authenticated", PATCH: "authenticated", DELETE: "admin" },
  "/1.0/events": { GET: "authenticated" },
  "/1.0/operations": { GET: "authenticated" },
  "/1.0/operations/{}": { GET: "authenticated", DELETE: "authenticated" },
  "/1.0/operations/{}/wait": { GET: "untrusted" },
  "/1.0/resources": { GET: "authenticated" },
  // allowMetrics, AllowUntrusted: the handler admits trusted and metrics certificates.
  "/1.0/metrics": { GET: "untrusted" },
  "/1.0/warnings": { GET: "admin" },
  "/1.0/warnings/{}": { GET: "admin", PUT: "admin", PATCH: "admin", DELETE: "admin" },
  "/1.0/projects": { GET: "authenticated", POST: "admin" },
  "/1.0/projects/{}": { GET: "authenticated", PUT: "admin", PATCH: "admin", POST: "admin", DELETE: "admin" },
  "/1.0/projects/{}/state": { GET: "authenticated" },
  "/1.0/storage-pools": { GET: "authenticated", POST: "admin" },
  "/1.0/storage-pools/{}": { GET: "authenticated", PUT: "admin", PATCH: "admin", DELETE: "admin" },
  "/1.0/storage-pools/{}/resources": { GET: "authenticated" },
  "/1.0/storage-pools/{}/volumes": { GET: P, POST: P },
  "/1.0/storage-pools/{}/volumes/{}": { GET: P, POST: P },
  "/1.0/storage-pools/{}/volumes/{}/{}": { GET: P, PUT: P, PATCH: P, POST: P, DELETE: P },
  "/1.0/storage-pools/{}/volumes/{}/{}/snapshots": { GET: P, POST: P },
  "/1.0/storage-pools/{}/volumes/{}/{}/snapshots/{}": { GET: P, PUT: P, PATCH: P, POST: P, DELETE: P },
  "/1.0/storage-pools/{}/volumes/{}/{}/state": { GET: P },
  "/1.0/storage-pools/{}/volumes/{}/{}/backups": { GET: P, POST: P },
  "/1.0/storage-pools/{}/volumes/{}/{}/backups/{}": { GET: P, POST: P, DELETE: P },
  "/1.0/storage-pools/{}/volumes/{}/{}/backups/{}/export": { GET: P },
  "/1.0/networks": { GET: P, POST: P },
  "/1.0/networks/{}": { GET: P, PUT: P, PATCH: P, POST: P, DELETE: P },
  "/1.0/networks/{}/state": { GET: P },
  "/1.0/networks/{}/leases": { GET: P },
  "/1.0/networks/{}/forwards": { GET: P, POST: P },
  "/1.0/networks/{}/forwards/{}": { GET: P, PUT: P, PATCH: P, DELETE: P },
  "/1.0/networks/{}/peers": { GET: P, POST: P },
  "/1.0/networks/{}/peers/{}": { GET: P, PUT: P, PATCH: P, DELETE: P },
  "/1.0/network-acls": { GET: P, POST: P },
  "/1.0/network-acls/{}": { GET: P, PUT: P, PATCH: P, POST: P, DELETE: P },
  "/1.0/network-acls/{}/log": { GET: P },
  "/1.0/network-zones": { GET: P, POST: P },
  "/1.0/network-zones/{}": { GET: P, PUT: P, PATCH: P, DELETE: P },
  "/1.0/network-zones/{}/records": { GET: P, POST: P },
  "/1.0/network-zones/{}/records/{}": { GET: P, PUT: P, PATCH: P, DELETE: P },
  "/1.0/profiles": { GET: P, POST: P },
  "/1.0/profiles/{}": { GET: P, PUT: P, PATCH: P, POST: P, DELETE: P },
  "/1.0/images": { GET: "public", POST: "public" },
  "/1.0/images/{}": { GET: "public", PUT: P, PATCH: P, DELETE: P },
  "/1.0/images/{}/export": { GET: "public", POST: P },
  "/1.0/images/{}/secret": { POST: P },
  "/1.0/images/{}/refresh": { POST: P },
  "/1.0/images/aliases": { GET: P, POST: P },
  "/1.0/images/aliases/{}": { GET: "public", PUT: P, PATCH: P, POST: P, DELETE: P },
  ...instanceRoutes("/1.0/instances"),
  ...instanceRoutes("/1.0/containers"),
  "/internal/ready": all("local"),
  "/internal/shutdown": all("local"),
  "/internal/sql": all("local"),
  "/internal/gc": all("local"),
  "/internal/testing/warnings": all("local"),
  "/internal/testing/bgp": all("local"),
  "/internal/recover/validate": all("local"),
  "/internal/recover/import": all("local"),
  // LXD: GET of the cluster and its members is allowAuthenticated; changes are admin.
  "/1.0/cluster": { GET: "authenticated", PUT: "admin" },
  "/1.0/cluster/members": { GET: "authenticated", POST: "admin" },
  "/1.0/cluster/members/{}": { GET: "authenticated", PUT: "admin", PATCH: "admin", POST: "admin", DELETE: "admin" },
  "/1.0/cluster/members/{}/state": { GET: "authenticated", POST: "admin" },
  // LXD: listing, showing and creating cluster groups is allowAuthenticated; the rest is admin.
  "/1.0/cluster/certificate": { PUT: "admin" },
  "/1.0/cluster/groups": { GET: "authenticated", POST: "authenticated" },
  "/1.0/cluster/groups/{}": { GET: "authenticated", PUT: "admin", PATCH: "admin", POST: "admin", DELETE: "admin" },
  // A joining server is not trusted yet: it proves itself with the join token's secret.
  "/internal/cluster/accept": { POST: "untrusted" },
};

/**
 * Objects that a project may keep in the default project instead (features.networks=false, ...).
 * nodelxd goes beyond LXD 5.0.2 here: a restricted client changes them only if it holds the
 * project that really owns them (LXD let a restricted client create host networks this way).
 */
export const SHARED_FEATURE: [RegExp, "networks" | "profiles" | "images" | "storage.volumes"][] = [
  [/^\/1\.0\/network/, "networks"],
  [/^\/1\.0\/profiles/, "profiles"],
  [/^\/1\.0\/images/, "images"],
  [/^\/1\.0\/storage-pools\/\{\}\/volumes/, "storage.volumes"],
];

/**
 * "authenticated" routes whose handlers nodelxd scopes to the request's project for restricted
 * clients (LXD 5.0.2 let them read every project's events and operations).
 */
export const PROJECT_SCOPED = new Set(["/1.0/events", "/1.0/operations"]);

export const normalise = (path: string) => path.replace(/:[^/]+/g, "{}");
