// Requests one member makes to another's API on its own behalf (moving an instance between
// members, evacuation), over HTTPS with the cluster certificate as LXD's cluster.Connect does.
// Unlike a cluster notification (service.notifyMember) these go through the other member's
// router like any client's: forwarded where the object lives, under the write lock there.
import { NotFound } from "../shared/errors.js";
import { memberRequest, type MemberTls } from "./forward.js";
import type { ClusterMembers } from "./members.js";
import type { ClusterPeers } from "../ports.js";

/** How long one wait on another member's operation lasts before asking again (its metadata relayed in between). */
const WAIT_SLICE_S = 2;

export class MemberPeers implements ClusterPeers {
  constructor(
    private readonly members: ClusterMembers,
    private readonly tls: () => MemberTls,
  ) {}

  certificate(): string {
    return this.tls().cert;
  }

  async url(name: string): Promise<string> {
    try {
      return await this.members.url(name);
    } catch (e) {
      if (e instanceof NotFound) throw new NotFound("Cluster member not found");
      throw e;
    }
  }

  async status(name: string): Promise<string> {
    await this.url(name);
    return (await this.members.get(name)).status;
  }

  markEvacuated(name: string, evacuated: boolean): Promise<void> {
    return this.members.markEvacuated(name, evacuated);
  }

  async schedule(): Promise<string | undefined> {
    return this.members.schedule().catch(() => undefined);
  }

  async call(name: string, method: string, path: string, body?: unknown, progress?: (m: Record<string, unknown>) => void): Promise<any> {
    const url = await this.url(name);
    const tls = this.tls();
    const r = await memberRequest(url, tls, method, path, body);
    if (r.status >= 400 || r.status < 200) throw Object.assign(new Error(String(r.body?.error || r.text || `HTTP ${r.status}`)), { status: r.status });
    if (r.status !== 202) return r.body?.metadata;
    const id = String(r.body?.metadata?.id ?? "");
    if (!/^[A-Za-z0-9-]+$/.test(id)) throw new Error(`Member ${name} answered with no operation`);
    for (;;) {
      const w = await memberRequest(url, tls, "GET", `/1.0/operations/${id}/wait?timeout=${WAIT_SLICE_S}`);
      const op = w.body?.metadata;
      if (w.status !== 200 || !op) throw new Error(String(w.body?.error || `Failed waiting for operation ${id} on ${name}`));
      if (progress && op.metadata && typeof op.metadata === "object") progress(op.metadata as Record<string, unknown>);
      if (op.status_code === 200) return op.metadata;
      if (op.status_code >= 400) throw new Error(String(op.err || op.status));
    }
  }
}
