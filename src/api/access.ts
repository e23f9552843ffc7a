// Who may call what: the one place where LXD 5.0.2's endpoint rules are decided. Every route
// method declares an Access level (route.ts); the router calls `authorize` before the handler.
//
// LXD's model (lxd/daemon.go createCmd, lxd/rbac): a unix socket peer and an unrestricted
// trusted certificate are admins; a restricted certificate is a user with every project
// permission ("view", "manage-containers", "operate-containers", ...) but "manage-projects",
// in the projects its certificate lists, and none elsewhere; a client whose certificate is
// not trusted reaches only the endpoints marked AllowUntrusted, with GET or POST.
import type { Requestor } from "../shared/requestor.js";
import { Forbidden } from "../shared/errors.js";

export const METHODS = ["GET", "PUT", "PATCH", "POST", "DELETE"] as const;
export type Method = (typeof METHODS)[number] | "HEAD";

export const ACCESS_LEVELS = [
  /** Any client, any method: only `/` (LXD's mux root, outside its endpoint table). */
  "open",
  /** AllowUntrusted: anyone; the handler sees whether the caller is trusted. */
  "untrusted",
  /**
   * AllowUntrusted on a project's objects (images): anyone; a restricted caller outside the
   * request's project is served as an untrusted one (public objects only), as LXD's handlers do.
   */
  "public",
  /** allowAuthenticated: any trusted client; handlers filter what restricted clients see. */
  "authenticated",
  /** allowProjectPermission: trusted; restricted clients only within their projects. */
  "project",
  /** No access handler: unrestricted trusted clients only (server-wide objects). */
  "admin",
  /** /internal: the unix socket only (LXD refuses it to every remote client). */
  "local",
] as const;
export type Access = (typeof ACCESS_LEVELS)[number];

/** An unrestricted trusted client (or the unix socket). */
export function isAdmin(who: Requestor): boolean {
  return who.trusted && !who.restricted;
}

/** Whether the caller may see and use objects of `project` (LXD: UserHasPermission(project, "view")). */
export function mayUseProject(who: Requestor, project: string): boolean {
  if (!who.trusted) return false;
  if (!who.restricted) return true;
  return (who.projects ?? []).includes(project);
}

/** The caller as an untrusted client: how a restricted certificate is served outside its projects on public endpoints. */
export function asUntrusted(who: Requestor): Requestor {
  return { ...who, trusted: false, restricted: false, projects: [] };
}

export interface AccessRequest {
  method: Method | string;
  /** `?project=` or "default" (LXD's projectParam). */
  project: string;
  /** Whether a handler is declared for the method (LXD answers 501 after the trust check). */
  implemented: boolean;
  /** The X-LXD-authenticated header: the client insists on being trusted. */
  requireAuthenticated: boolean;
  /**
   * For writes to objects a project may share with the default project (features.networks=false
   * and the like): the project that actually holds them. A restricted client must hold it too.
   * (A function: only asked for restricted clients' writes.)
   */
  owner?: () => string;
}

export type Decision = { allow: true; requestor: Requestor } | { allow: false; status: 403 | 501 };

/**
 * LXD's order: /internal over TLS is refused first; then an untrusted client passes only where
 * the method allows untrusted callers; then a missing handler is 501; then the access handler.
 */
export function authorize(access: Access, who: Requestor, req: AccessRequest): Decision {
  const deny = { allow: false, status: 403 } as const;
  if (access === "local" && who.protocol !== "unix") return deny;
  if (access === "open") return req.implemented ? { allow: true, requestor: who } : { allow: false, status: 501 };
  if (!who.trusted) {
    // LXD's AllowUntrusted is per action, and only GET and POST actions look at it.
    const untrustedOk = (access === "untrusted" || access === "public") && (req.method === "GET" || req.method === "POST") && req.implemented && !req.requireAuthenticated;
    if (!untrustedOk) return deny;
  }
  if (!req.implemented) return { allow: false, status: 501 };
  switch (access) {
    case "untrusted":
    case "authenticated":
    case "local":
      return { allow: true, requestor: who };
    case "public":
      return { allow: true, requestor: !who.trusted || mayUseProject(who, req.project) ? who : asUntrusted(who) };
    case "project":
      if (!mayUseProject(who, req.project)) return deny;
      if (who.restricted && req.owner && req.method !== "GET" && req.method !== "HEAD" && !mayUseProject(who, req.owner())) return deny;
      return { allow: true, requestor: who };
    case "admin":
      return isAdmin(who) ? { allow: true, requestor: who } : deny;
  }
}

/** Throw LXD's 403 unless the caller may use `project` (handlers of "authenticated" routes). */
export function assertProject(who: Requestor, project: string): void {
  if (!mayUseProject(who, project)) throw new Forbidden();
}

/** Throw LXD's 403 unless the caller is an admin. */
export function assertAdmin(who: Requestor): void {
  if (!isAdmin(who)) throw new Forbidden();
}

/** LXD's FilterUsedBy: the URLs of objects in projects the caller may use (`?project=`, default "default"). */
export function filterUsedBy(who: Requestor, urls: string[] | null | undefined): string[] {
  return (urls ?? []).filter((u) => {
    const query = u.includes("?") ? u.slice(u.indexOf("?") + 1) : "";
    return mayUseProject(who, new URLSearchParams(query).get("project") || "default");
  });
}

/**
 * Whether a request is another cluster member telling this one to do its own part of a
 * cluster-wide change (LXD's cluster notifications): presented the cluster certificate and
 * carries the local-only header.
 */
export function fromMember(req: { requestor: Requestor; headers: Record<string, string | string[] | undefined> }): boolean {
  return req.requestor.username === "cluster" && req.requestor.protocol === "tls" && !!req.headers["x-nodelxd-local-only"];
}
