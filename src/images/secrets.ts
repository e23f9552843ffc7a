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
  /** What the token's creator asked for the pushed image (push tokens): aliases, public, ... */
  extra: Record<string, unknown>;
}

export class ImageSecrets {
  private readonly tokens = new Map<string, Token>();

  constructor(
    private readonly ops: OperationManager,
    private readonly events: EventHub,
  ) {}

  /**
   * A token operation for `fingerprint`. `extra` goes into its metadata beside the secret: a
   * push token (POST /1.0/images with source.mode "push") carries the image's aliases,
   * expires_at, properties and public flag there, for the upload that presents it.
   */
  create(project: string, fingerprint: string, requestor?: Requestor, extra: Record<string, unknown> = {}): OperationView {
    const secret = randomBytes(32).toString("hex");
    const op = this.ops.create({
      class: "token",
      description: "Image download token",
      project,
      resources: { images: [`/1.0/images/${fingerprint}`] },
      metadata: { ...extra, secret },
      mayCancel: true,
    });
    this.tokens.set(op.id, { project, fingerprint, secret, extra });
    this.events.lifecycle("image-secret-created", `/1.0/images/${fingerprint}`, {
      project,
      requestor: requestor ? { username: requestor.username, protocol: requestor.protocol, address: requestor.address } : undefined,
    });
    return op;
  }

  /** Whether `secret` opens `fingerprint` in `project`; a running token is cancelled (single use). */
  async use(project: string, fingerprint: string, secret: string | undefined): Promise<boolean> {
    return (await this.claim(project, fingerprint, secret)) !== undefined;
  }

  /** As `use`, giving the token's extra metadata (LXD's imageValidSecret). */
  async claim(project: string, fingerprint: string, secret: string | undefined): Promise<Record<string, unknown> | undefined> {
    if (!secret) return undefined;
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
      return ["Running", "Cancelling", "Cancelled"].includes(this.ops.get(id).status) ? t.extra : undefined;
    }
    return undefined;
  }
}

function sameSecret(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}
