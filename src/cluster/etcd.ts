// etcd3 (and the gRPC and protobuf stack under it, some 20 MiB resident) loads when a member
// first talks to etcd: a standalone daemon never does.
import { createRequire } from "node:module";

type Etcd3Module = typeof import("etcd3");
let loaded: Etcd3Module | undefined;

export const etcd3 = (): Etcd3Module => (loaded ??= createRequire(import.meta.url)("etcd3") as Etcd3Module);
