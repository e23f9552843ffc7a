// Image secrets (LXD's image download tokens): POST /1.0/images/{fp}/secret starts a token
// operation holding a random secret; a client without trust then reads that one private
// image with ?secret=. The first use cancels the token, and as in LXD the cancelled operation
// still admits the same secret while it stays listed (the image's GET and its /export).
import { randomBytes, timingSafeEqual } from "node:crypto";
import type { Requestor } from "../shared/requestor.js";
import type { EventHub } from "../operations/events.js";
import type { OperationManager } from "../operations/manager.js";
import type { OperationView } from "../operations/types.js";

interface Token {
  project: string;
  fingerprint: string;
  secret: string;
}

export class ImageSecrets {
  private readonly tokens = new Map<string, Token>();

  constructor(
    private readonly ops: OperationManager,
    private readonly events: EventHub,
  ) {}

  create(project: string, fingerprint: string, requestor?: Requestor): OperationView {
    const secret = randomBytes(32).toString("hex");
    const op = this.ops.create({
      class: "token",
      description: "Image download token",
      project,
      resources: { images: [`/1.0/images/${fingerprint}`] },
      metadata: { secret },
      mayCancel: true,
    });
    this.tokens.set(op.id, { project, fingerprint, secret });
    this.events.lifecycle("image-secret-created", `/1.0/images/${fingerprint}`, {
      project,
      requestor: requestor ? { username: requestor.username, protocol: requestor.protocol, address: requestor.address } : undefined,
    });
    return op;
  }

  /** Whether `secret` opens `fingerprint` in `project`; a running token is cancelled (single use). */
  async use(project: string, fingerprint: string, secret: string | undefined): Promise<boolean> {
    if (!secret) return false;
    for (const [id, t] of this.tokens) {
      let view: OperationView;
      try {
        view = this.ops.get(id);
      } catch {
        this.tokens.delete(id);
        continue;
      }
      if (t.project !== project || t.fingerprint !== fingerprint || !sameSecret(t.secret, secret)) continue;
      if (view.status === "Running") await this.ops.cancel(id).catch(() => {});
      return ["Running", "Cancelling", "Cancelled"].includes(this.ops.get(id).status);
    }
    return false;
  }
}

function sameSecret(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}
