// /1.0/instances/{name}/sftp: `Upgrade: sftp` switches the connection to an SFTP session
// inside the instance's root (`lxc file mount`). Without the upgrade, LXD's 400.
import { SftpSession } from "../../files/sftp-session.js";
import type { RuntimeOf } from "../../instances/access.js";
import { BadRequest } from "../../shared/errors.js";
import { route, type Route } from "../route.js";
import type { UpgradeRoute } from "../websocket.js";

export function sftpRoutes(): Route[] {
  const r = route("/1.0/instances/:name/sftp", {
    GET: () => {
      throw new BadRequest("Missing or invalid upgrade header");
    },
  }, "project");
  return [r, { ...r, path: "/1.0/containers/:name/sftp" }];
}

export function sftpUpgrade(runtimeOf: RuntimeOf): UpgradeRoute {
  return {
    protocol: "sftp",
    access: "project",
    path: /^\/1\.0\/(?:instances|containers)\/([^/]+)\/sftp$/,
    handle: (_req, socket, head, match, url) => {
      const rt = runtimeOf(url.searchParams.get("project") || "default", decodeURIComponent(match[1]));
      const session = new SftpSession(rt, socket);
      socket.write("HTTP/1.1 101 Switching Protocols\r\nUpgrade: sftp\r\nConnection: Upgrade\r\n\r\n");
      if (head.length) socket.emit("data", head);
      void session;
    },
  };
}
