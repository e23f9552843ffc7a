// Image server protocols, one line each.
import { lxdServer } from "./lxd.js";
import { simplestreamsServer } from "./simplestreams.js";
import type { ImageServer, ServerAddress } from "./types.js";

export const PROTOCOLS = {
  lxd: (a: ServerAddress, project?: string) => lxdServer(a, project),
  simplestreams: (a: ServerAddress) => simplestreamsServer(a),
} satisfies Record<string, (a: ServerAddress, project?: string) => ImageServer>;

export type ProtocolName = keyof typeof PROTOCOLS;

export function isProtocol(name: string): name is ProtocolName {
  return Object.hasOwn(PROTOCOLS, name);
}
