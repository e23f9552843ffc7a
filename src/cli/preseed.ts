// What `nodelxd init` applies: the preseed document's types, and the API calls applying one needs
// (shared by the preseed path in init.ts and the interactive questions in init-interactive.ts).
import { apiRequest, waitOperation, type ApiResponse } from "./client.js";

type Config = Record<string, unknown>;

export interface NetworkPreseed {
  name: string;
  type?: string;
  project?: string;
  description?: string;
  config?: Config;
}
export interface StoragePoolPreseed {
  name: string;
  driver: string;
  description?: string;
  config?: Config;
}
export interface ProfilePreseed {
  name: string;
  description?: string;
  config?: Config;
  devices?: Record<string, Config>;
}
export interface Preseed {
  config?: Config;
  networks?: NetworkPreseed[];
  storage_pools?: StoragePoolPreseed[];
  profiles?: ProfilePreseed[];
  projects?: unknown[];
  cluster?: ClusterPreseed | null;
}

export interface ClusterPreseed {
  enabled?: boolean;
  server_name?: string;
  server_address?: string;
  cluster_address?: string;
  cluster_certificate?: string;
  cluster_password?: string;
  cluster_token?: string;
  member_config?: unknown[];
}

/** The API calls a preseed needs; raw responses so "absent API" can be told from failures. */
export class InitApi {
  constructor(private readonly socket: string) {}
  call(method: string, path: string, body?: unknown): Promise<ApiResponse> {
    return apiRequest(this.socket, method, path, body, 0);
  }
  async ok(method: string, path: string, body?: unknown): Promise<any> {
    return waitOperation(this.socket, await this.call(method, path, body));
  }
}
