// lxc-attach forces ONLCR on the terminal it is given (liblxc's lxc_setup_tios), so every
// "\n" the container's pty sends reaches us as "\r\n": a second translation LXD's direct pty
// does not have. That translation is always on for the whole session, so undoing it is exact:
// each "\r\n" read from our pty was a "\n" written by lxc-attach.
export class OnlcrDecoder {
  private pendingCr = false;

  decode(chunk: Buffer): Buffer {
    let input = chunk;
    if (this.pendingCr) {
      input = Buffer.concat([Buffer.from("\r"), chunk]);
      this.pendingCr = false;
    }
    const out = Buffer.allocUnsafe(input.length);
    let n = 0;
    for (let i = 0; i < input.length; i++) {
      const b = input[i];
      if (b === 0x0d) {
        if (i === input.length - 1) {
          this.pendingCr = true;
          break;
        }
        if (input[i + 1] === 0x0a) continue;
      }
      out[n++] = b;
    }
    return out.subarray(0, n);
  }

  /** Whatever is held back at the end of the stream. */
  flush(): Buffer {
    const rest = this.pendingCr ? Buffer.from("\r") : Buffer.alloc(0);
    this.pendingCr = false;
    return rest;
  }
}
