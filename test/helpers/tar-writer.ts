// A tiny ustar writer for hand-made (hostile) test tarballs: every header field is ours.
export interface Entry {
  name: string;
  type?: "0" | "1" | "2" | "3" | "4" | "5" | "6" | "x" | "L" | "K" | "g";
  linkname?: string;
  data?: Buffer | string;
  mode?: number;
  uid?: number;
  gid?: number;
  /** Override the size field (e.g. data on a directory). */
  size?: number;
  /** Corrupt the checksum. */
  badChecksum?: boolean;
}

function octal(n: number, width: number): string {
  return n.toString(8).padStart(width - 1, "0") + "\0";
}

export function header(e: Entry): Buffer {
  const b = Buffer.alloc(512);
  const data = e.data === undefined ? Buffer.alloc(0) : Buffer.from(e.data);
  b.write(e.name, 0, 100, "utf8");
  b.write(octal(e.mode ?? (e.type === "5" ? 0o755 : 0o644), 8), 100, "latin1");
  b.write(octal(e.uid ?? 0, 8), 108, "latin1");
  b.write(octal(e.gid ?? 0, 8), 116, "latin1");
  b.write(octal(e.size ?? data.length, 12), 124, "latin1");
  b.write(octal(1577836800, 12), 136, "latin1");
  b.write("        ", 148, "latin1");
  b.write(e.type ?? "0", 156, "latin1");
  if (e.linkname) b.write(e.linkname, 157, 100, "utf8");
  b.write("ustar\0", 257, "latin1");
  b.write("00", 263, "latin1");
  let sum = 0;
  for (const x of b) sum += x;
  if (e.badChecksum) sum += 1;
  b.write(octal(sum, 7) + " ", 148, "latin1");
  return b;
}

export function entry(e: Entry): Buffer {
  const data = e.data === undefined ? Buffer.alloc(0) : Buffer.from(e.data);
  const pad = Buffer.alloc((512 - (data.length % 512)) % 512);
  return Buffer.concat([header(e), data, pad]);
}

export function pax(records: Record<string, string>, name = "PaxHeader"): Buffer {
  let body = "";
  for (const [k, v] of Object.entries(records)) {
    const rest = ` ${k}=${v}\n`;
    let len = rest.length + 1;
    while (String(len).length + rest.length !== len) len = String(len).length + rest.length;
    body += `${len}${rest}`;
  }
  return entry({ name, type: "x", data: body });
}

export function tarball(...parts: Buffer[]): Buffer {
  return Buffer.concat([...parts, Buffer.alloc(1024)]);
}

export const META = "architecture: x86_64\ncreation_date: 1600000000\nproperties:\n  os: test\n";

/** A minimal valid unified image, plus extra members appended after rootfs/. */
export function imageTar(...extra: Buffer[]): Buffer {
  return tarball(
    entry({ name: "metadata.yaml", data: META }),
    entry({ name: "rootfs/", type: "5" }),
    entry({ name: "rootfs/etc/", type: "5" }),
    entry({ name: "rootfs/etc/hostname", data: "x\n" }),
    ...extra,
  );
}
