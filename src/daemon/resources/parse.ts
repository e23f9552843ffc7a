// Pure parsers for the text files /proc and /sys expose. No I/O here: unit-tested with fixtures.

/** /proc/meminfo or /sys/devices/system/node/nodeN/meminfo ("Node N " prefixes) → bytes (or counts for HugePages_*). */
export function parseMeminfo(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const raw of text.split("\n")) {
    const line = raw.replace(/^Node \d+ /, "");
    const colon = line.indexOf(":");
    if (colon < 0) continue;
    const key = line.slice(0, colon).trim();
    const m = /^\s*(\d+)\s*(kB)?\s*$/.exec(line.slice(colon + 1));
    if (!m) continue;
    out.set(key, Number(m[1]) * (m[2] ? 1024 : 1));
  }
  return out;
}

/** /proc/cpuinfo → one record per processor block. */
export function parseCpuinfo(text: string): Record<string, string>[] {
  const out: Record<string, string>[] = [];
  for (const block of text.split(/\n\s*\n/)) {
    const rec: Record<string, string> = {};
    for (const line of block.split("\n")) {
      const colon = line.indexOf(":");
      if (colon < 0) continue;
      rec[line.slice(0, colon).trim()] = line.slice(colon + 1).trim();
    }
    if (Object.keys(rec).length) out.push(rec);
  }
  return out;
}

/** Kernel cpu lists such as "0-3,8,10-11" → [0,1,2,3,8,10,11]. */
export function parseCpuList(text: string): number[] {
  const out: number[] = [];
  for (const part of text.trim().split(",")) {
    if (part === "") continue;
    const [a, b] = part.split("-").map(Number);
    if (!Number.isInteger(a)) continue;
    for (let i = a; i <= (Number.isInteger(b) ? b : a); i++) out.push(i);
  }
  return out;
}

/** Cache sizes as sysfs writes them ("48K", "2048K", "8M") → bytes. */
export function parseCacheSize(text: string): number {
  const m = /^\s*(\d+)\s*([KMG]?)/.exec(text);
  if (!m) return 0;
  const mult = { "": 1, K: 1024, M: 1024 ** 2, G: 1024 ** 3 }[m[2] as "" | "K" | "M" | "G"];
  return Number(m[1]) * mult;
}

/** "0x1af4\n" → "1af4". */
export function parseHexId(text: string | undefined): string {
  return (text ?? "").trim().replace(/^0x/, "").padStart(4, "0");
}

/**
 * PCI Vital Product Data: the identifier string (tag 0x82) and the VPD-R keywords (tag 0x90),
 * as LXD's `vpd` object ({product_name, entries}).
 */
export function parseVpd(buf: Buffer): { product_name?: string; entries?: Record<string, string> } {
  const out: { product_name?: string; entries?: Record<string, string> } = {};
  let i = 0;
  while (i < buf.length) {
    const tag = buf[i];
    if (tag === 0x78 || tag === 0x0f) break; // end tag
    if (!(tag & 0x80)) {
      i += 1 + (tag & 0x07); // small resource: skip
      continue;
    }
    if (i + 3 > buf.length) break;
    const len = buf.readUInt16LE(i + 1);
    const data = buf.subarray(i + 3, i + 3 + len);
    if (tag === 0x82) out.product_name = data.toString("latin1").trim();
    if (tag === 0x90) {
      let j = 0;
      while (j + 3 <= data.length) {
        const key = data.subarray(j, j + 2).toString("latin1");
        const klen = data[j + 2];
        const value = data.subarray(j + 3, j + 3 + klen);
        if (key !== "RV") (out.entries ??= {})[key] = value.toString("latin1").replace(/\0+$/, "").trim();
        j += 3 + klen;
      }
    }
    i += 3 + len;
  }
  return out;
}

/** "254:0" style numbers from a `dev` file. */
export function parseDev(text: string | undefined): string {
  return (text ?? "").trim();
}

/** A pci.ids / usb.ids database: vendor id → name, and "vendor:device" → name. */
export interface IdDatabase {
  vendors: Map<string, string>;
  products: Map<string, string>;
}

/** Parse the hwdata id format (vendor lines, then tab-indented device lines; classes after "C "). */
export function parseIdDatabase(text: string): IdDatabase {
  const vendors = new Map<string, string>();
  const products = new Map<string, string>();
  let vendor = "";
  for (const line of text.split("\n")) {
    if (line === "" || line.startsWith("#")) continue;
    const top = /^([0-9a-f]{4})\s+(.+)$/.exec(line);
    if (top) {
      vendor = top[1];
      vendors.set(vendor, top[2].trim());
      continue;
    }
    if (/^[A-Z] /.test(line)) {
      vendor = ""; // class lists and the like: not vendors
      continue;
    }
    const dev = /^\t([0-9a-f]{4})\s+(.+)$/.exec(line);
    if (dev && vendor) products.set(`${vendor}:${dev[1]}`, dev[2].trim());
  }
  return { vendors, products };
}
