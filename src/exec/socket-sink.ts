// Output from a child to a websocket with bounded memory: the source is paused while too
// much is queued on the socket and resumed once it drains.
import type { WebSocket } from "ws";

const HIGH_WATER = 4 * 1024 * 1024;
const LOW_WATER = 1024 * 1024;

export interface FlowControl {
  pause(): void;
  resume(): void;
}

export class SocketSink {
  private pending = 0;
  private paused = false;
  private waiters: (() => void)[] = [];

  constructor(
    private readonly ws: WebSocket,
    private readonly flow: FlowControl,
  ) {
    ws.once("close", () => {
      this.pending = 0;
      this.release();
    });
  }

  write(chunk: Buffer): void {
    if (this.ws.readyState !== this.ws.OPEN) return;
    const len = chunk.length;
    this.pending += len;
    this.ws.send(chunk, { binary: true }, () => {
      this.pending = Math.max(0, this.pending - len);
      this.release();
    });
    if (!this.paused && this.pending > HIGH_WATER) {
      this.paused = true;
      this.flow.pause();
    }
  }

  private release(): void {
    if (this.paused && this.pending <= LOW_WATER) {
      this.paused = false;
      this.flow.resume();
    }
    if (this.pending === 0) for (const w of this.waiters.splice(0)) w();
  }

  /** Resolves once everything written so far has reached the socket (or the socket closed). */
  drained(): Promise<void> {
    if (this.pending === 0 || this.ws.readyState !== this.ws.OPEN) return Promise.resolve();
    return new Promise((r) => this.waiters.push(r));
  }

  /** LXD's end-of-stream barrier: an empty text message. */
  endOfStream(): void {
    if (this.ws.readyState === this.ws.OPEN) this.ws.send("");
  }
}
