// The authorization decision as a specification: LXD 5.0.2's createCmd order and rules.
import { describe, expect, it } from "vitest";
import { authorize, filterUsedBy, mayUseProject, type Access } from "../../src/api/access.js";
import type { Requestor } from "../../src/shared/requestor.js";

const unix: Requestor = { trusted: true, protocol: "unix", username: "root", address: "@" };
const admin: Requestor = { trusted: true, protocol: "tls", username: "a", address: "127.0.0.1:1", fingerprint: "a", restricted: false };
const restricted: Requestor = { trusted: true, protocol: "tls", username: "r", address: "127.0.0.1:2", fingerprint: "r", restricted: true, projects: ["p1"] };
const none: Requestor = { trusted: true, protocol: "tls", username: "n", address: "127.0.0.1:3", fingerprint: "n", restricted: true, projects: [] };
const untrusted: Requestor = { trusted: false, protocol: "tls", username: "u", address: "127.0.0.1:4", fingerprint: "u" };

const decide = (access: Access, who: Requestor, method = "GET", project = "default", extra: { implemented?: boolean; requireAuthenticated?: boolean; owner?: string } = {}) => {
  const owner = extra.owner;
  const d = authorize(access, who, { method, project, implemented: extra.implemented ?? true, requireAuthenticated: extra.requireAuthenticated ?? false, owner: owner === undefined ? undefined : () => owner });
  return d.allow ? (d.requestor.trusted ? "allow" : "allow-as-untrusted") : d.status;
};

describe("authorize", () => {
  it("/internal: the unix socket only, whoever the TLS client is", () => {
    expect(decide("local", unix, "PUT")).toBe("allow");
    for (const who of [admin, restricted, untrusted]) expect(decide("local", who, "GET")).toBe(403);
    expect(decide("local", admin, "GET", "default", { implemented: false })).toBe(403);
  });

  it("untrusted clients: only GET/POST of untrusted or public actions, never with X-LXD-authenticated", () => {
    expect(decide("untrusted", untrusted, "GET")).toBe("allow-as-untrusted");
    expect(decide("untrusted", untrusted, "POST")).toBe("allow-as-untrusted");
    expect(decide("untrusted", untrusted, "PUT")).toBe(403);
    expect(decide("untrusted", untrusted, "GET", "default", { requireAuthenticated: true })).toBe(403);
    expect(decide("untrusted", untrusted, "POST", "default", { implemented: false })).toBe(403);
    for (const a of ["authenticated", "project", "admin"] as Access[]) expect(decide(a, untrusted, "GET")).toBe(403);
    expect(decide("open", untrusted, "DELETE")).toBe("allow-as-untrusted");
  });

  it("a method without a handler is 501 for trusted clients, after the trust check", () => {
    expect(decide("admin", admin, "DELETE", "default", { implemented: false })).toBe(501);
    expect(decide("admin", restricted, "DELETE", "default", { implemented: false })).toBe(501);
  });

  it("restricted clients: their projects only, no admin actions", () => {
    expect(decide("project", restricted, "GET", "p1")).toBe("allow");
    expect(decide("project", restricted, "POST", "p2")).toBe(403);
    expect(decide("project", restricted, "GET", "default")).toBe(403);
    expect(decide("project", none, "GET", "default")).toBe(403);
    expect(decide("admin", restricted, "POST")).toBe(403);
    expect(decide("authenticated", restricted, "GET", "p2")).toBe("allow");
    expect(decide("project", admin, "POST", "p2")).toBe("allow");
    expect(decide("admin", unix, "PUT")).toBe("allow");
  });

  it("writes to objects a project shares with default need that project too", () => {
    expect(decide("project", restricted, "POST", "p1", { owner: "default" })).toBe(403);
    expect(decide("project", restricted, "GET", "p1", { owner: "default" })).toBe("allow");
    expect(decide("project", restricted, "POST", "p1", { owner: "p1" })).toBe("allow");
    expect(decide("project", admin, "POST", "p1", { owner: "default" })).toBe("allow");
  });

  it("public actions serve a restricted client outside its projects as an untrusted one", () => {
    expect(decide("public", restricted, "GET", "p1")).toBe("allow");
    expect(decide("public", restricted, "GET", "p2")).toBe("allow-as-untrusted");
    expect(decide("public", admin, "GET", "p2")).toBe("allow");
  });
});

describe("project visibility", () => {
  it("mayUseProject and FilterUsedBy", () => {
    expect(mayUseProject(restricted, "p1")).toBe(true);
    expect(mayUseProject(restricted, "default")).toBe(false);
    expect(mayUseProject(untrusted, "default")).toBe(false);
    expect(mayUseProject(unix, "anything")).toBe(true);
    expect(filterUsedBy(restricted, ["/1.0/instances/a", "/1.0/instances/b?project=p1", "/1.0/profiles/x?project=p2"])).toEqual(["/1.0/instances/b?project=p1"]);
    expect(filterUsedBy(admin, null)).toEqual([]);
  });
});
