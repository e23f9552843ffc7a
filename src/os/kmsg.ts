// The kernel's log ring (/dev/kmsg), read without blocking: each read() returns one record,
// "<prio>,<seq>,<usec since boot>,<flags>[,...];<message>", and EAGAIN ends the buffer.
import { closeSync, constants, openSync, readFileSync, readSync } from "node:fs";

export interface KernelRecord {
  /** Wall-clock time of the record (boot time + its monotonic stamp). */
  time: Date;
  message: string;
}

const RECORD = /^\d+,\d+,(\d+),[^;]*;(.*)$/s;

/** Parse one /dev/kmsg record given the boot time in ms since the epoch; undefined if malformed. */
export function parseKmsgRecord(raw: string, bootMs: number): KernelRecord | undefined {
  const m = RECORD.exec(raw);
  if (!m) return undefined;
  // Continuation lines (" KEY=value") follow the first line; only the first is the message.
  const message = m[2].split("\n")[0];
  return { time: new Date(bootMs + Math.floor(Number(m[1]) / 1000)), message };
}

function bootTimeMs(): number {
  const uptime = Number(readFileSync("/proc/uptime", "utf8").split(" ")[0]);
  return Date.now() - uptime * 1000;
}

/** Every record still in the kernel's ring buffer whose message starts with one of `prefixes`. */
export function readKernelLog(prefixes: string[], path = "/dev/kmsg"): KernelRecord[] {
  if (prefixes.length === 0) return [];
  const boot = bootTimeMs();
  const fd = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK);
  const buf = Buffer.alloc(8192);
  const out: KernelRecord[] = [];
  try {
    for (;;) {
      let n: number;
      try {
        n = readSync(fd, buf, 0, buf.length, null);
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code;
        if (code === "EAGAIN") break;
        if (code === "EPIPE") continue; // the record was overwritten while we read: skip it
        throw e;
      }
      if (n <= 0) break;
      const rec = parseKmsgRecord(buf.toString("utf8", 0, n), boot);
      if (rec && prefixes.some((p) => rec.message.startsWith(p))) out.push(rec);
    }
  } finally {
    closeSync(fd);
  }
  return out;
}
