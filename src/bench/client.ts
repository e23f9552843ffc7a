// A minimal LXD REST client over a unix socket for the benchmarks: the same code drives
// nodelxd and the daemon it is compared with.
import { createReadStream } from "node:fs";
import { Agent } from "node:http";
import { dirname } from "node:path";
import type { Readable } from "node:stream";
import { jsonPayload, readReply, send } from "../os/http-client.js";

export interface Response {
  status: number;
  body: any;
}

export type Body = undefined | Record<string, unknown> | { file: string };

export class BenchClient {
  private readonly agent = new Agent({ keepAlive: true });

  constructor(readonly socket: string) {}

  /** The directory `lxc` needs as LXD_DIR to reach this daemon. */
  get lxdDir(): string {
    if (!this.socket.endsWith("/unix.socket")) throw new Error(`${this.socket}: the stock client needs a socket named unix.socket`);
    return dirname(this.socket);
  }

  async request(method: string, path: string, body?: Body, headers: Record<string, string> = {}): Promise<Response> {
    const file = body && "file" in body && typeof body.file === "string" ? body.file : undefined;
    const json = file === undefined ? jsonPayload(body) : { payload: undefined, headers: {} };
    const payload: Readable | Buffer | undefined = file === undefined ? json.payload : createReadStream(file);
    const r = await readReply(await send({ socketPath: this.socket, method, path, agent: this.agent, headers: { ...json.headers, ...headers } }, payload));
    return { status: r.status, body: r.body === undefined ? r.text : r.body };
  }

  /** A synchronous call; its metadata, or an error with LXD's message. */
  async sync(method: string, path: string, body?: Body, headers?: Record<string, string>): Promise<any> {
    const r = await this.request(method, path, body, headers);
    if (r.status < 200 || r.status >= 300) throw new Error(`${method} ${path}: ${r.status} ${r.body?.error ?? r.body}`);
    return r.body?.metadata;
  }

  /** Start an operation and return its id without waiting. */
  async start(method: string, path: string, body?: Body, headers?: Record<string, string>): Promise<{ id: string; metadata: any }> {
    const r = await this.request(method, path, body, headers);
    if (r.status !== 202) throw new Error(`${method} ${path}: ${r.status} ${r.body?.error ?? JSON.stringify(r.body)}`);
    return { id: r.body.metadata.id, metadata: r.body.metadata };
  }

  async wait(id: string, what: string): Promise<any> {
    const op = await this.sync("GET", `/1.0/operations/${id}/wait?timeout=300`);
    if (op.status !== "Success") throw new Error(`${what}: ${op.status}: ${op.err}`);
    return op;
  }

  /** Run an asynchronous call to completion. */
  async op(method: string, path: string, body?: Body, headers?: Record<string, string>): Promise<any> {
    const { id } = await this.start(method, path, body, headers);
    return this.wait(id, `${method} ${path}`);
  }

  close(): void {
    this.agent.destroy();
  }
}
