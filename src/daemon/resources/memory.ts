// Memory from /proc/meminfo, memory block counts (/sys/devices/system/memory) and NUMA nodes.
import { parseMeminfo } from "./parse.js";
import type { SysFs } from "./sysfs.js";

export interface MemoryNode {
  numa_node: number;
  hugepages_used: number;
  hugepages_total: number;
  used: number;
  total: number;
}
export interface Memory {
  nodes: MemoryNode[];
  hugepages_total: number;
  hugepages_used: number;
  hugepages_size: number;
  used: number;
  total: number;
}

const MEMORY_DIR = "/sys/devices/system/memory";
const NODE_DIR = "/sys/devices/system/node";

interface Blocks {
  size: number;
  online: Set<string>;
}

/** Memory blocks and which are online, read once per request and shared by all nodes. */
function readBlocks(fs: SysFs): Blocks | undefined {
  const size = Number.parseInt(fs.trim(`${MEMORY_DIR}/block_size_bytes`) ?? "", 16);
  if (!size) return undefined;
  const names = fs.list(MEMORY_DIR).filter((e) => /^memory\d+$/.test(e));
  if (!names.length) return undefined;
  return { size, online: new Set(names.filter((b) => (fs.trim(`${MEMORY_DIR}/${b}/online`) ?? "1") === "1")) };
}

/** Installed memory: online memory blocks × block size (MemTotal leaves out what the kernel reserves). */
function blockTotal(fs: SysFs, blocks: Blocks | undefined, dir: string): number | undefined {
  if (!blocks) return undefined;
  const names = dir === MEMORY_DIR ? [...blocks.online] : fs.list(dir).filter((e) => /^memory\d+$/.test(e) && blocks.online.has(e));
  return names.length ? names.length * blocks.size : undefined;
}

function hugepages(info: Map<string, number>, size: number): { total: number; used: number } {
  const total = info.get("HugePages_Total") ?? 0;
  const free = info.get("HugePages_Free") ?? 0;
  return { total: total * size, used: (total - free) * size };
}

export function readMemory(fs: SysFs): Memory {
  const info = parseMeminfo(fs.read("/proc/meminfo") ?? "");
  const size = info.get("Hugepagesize") ?? 0;
  const blocks = readBlocks(fs);
  const total = blockTotal(fs, blocks, MEMORY_DIR) ?? info.get("MemTotal") ?? 0;
  const used = total - (info.get("MemFree") ?? 0) - (info.get("Cached") ?? 0) - (info.get("Buffers") ?? 0);
  const nodes: MemoryNode[] = [];
  for (const entry of fs.list(NODE_DIR).filter((e) => /^node\d+$/.test(e))) {
    const dir = `${NODE_DIR}/${entry}`;
    const nodeInfo = parseMeminfo(fs.read(`${dir}/meminfo`) ?? "");
    const hp = hugepages(nodeInfo, size);
    nodes.push({
      numa_node: Number(entry.slice(4)),
      hugepages_used: hp.used,
      hugepages_total: hp.total,
      used: nodeInfo.get("MemUsed") ?? 0,
      total: blockTotal(fs, blocks, dir) ?? nodeInfo.get("MemTotal") ?? 0,
    });
  }
  const hp = hugepages(info, size);
  return { nodes, hugepages_total: hp.total, hugepages_used: hp.used, hugepages_size: size, used, total };
}
