// The authoritative DNS listener on core.dns_address (UDP and TCP), serving network zones as
// LXD 5.0.2's lxd/dns does: SOA, AXFR and IXFR only, and only to peers the zone lists.
import { createSocket, type Socket as UdpSocket } from "node:dgram";
import { createServer, type Server as TcpServer, type Socket } from "node:net";
import { createRequire } from "node:module";
import type dnsPacketTypes from "dns-packet";

type DnsPacket = typeof dnsPacketTypes;
let dnsPacketModule: DnsPacket | undefined;
/** dns-packet is loaded by the first query (core.dns_address is rarely set). */
const dnsPacket = (): DnsPacket => (dnsPacketModule ??= createRequire(import.meta.url)("dns-packet") as DnsPacket);
import type { Logger } from "pino";
import { splitHostPort } from "../../config/validators.js";
import { allowedPeer, type ZoneRR } from "./rules.js";
import { parseTsig, signResponse, verifyTsig, type TsigRequest } from "./tsig.js";

const RCODE = { FORMERR: 1, SERVFAIL: 2, NXDOMAIN: 3, NOTIMP: 4 } as const;
const AA = 1 << 10;
/** A TCP client must send its query within this time, and may send at most this many bytes. */
const TCP_IDLE_MS = 10_000;
const MAX_QUERY = 16 * 1024;

export type ZoneLookup = (zone: string, full: boolean) => Promise<{ config: Record<string, string>; records: ZoneRR[] } | undefined>;

/** The answer to one query (pure apart from the lookup). */
export async function answer(query: Buffer, remote: string, lookup: ZoneLookup): Promise<Buffer | undefined> {
  let req: dnsPacketTypes.Packet;
  try {
    req = dnsPacket().decode(query);
  } catch {
    return undefined;
  }
  const reply = (rcode: number, answers: ZoneRR[] = []) =>
    dnsPacket().encode({
      type: "response",
      id: req.id,
      flags: (rcode === 0 ? AA : 0) | rcode,
      questions: req.questions,
      answers: answers as dnsPacketTypes.Answer[],
    });
  if (!req.questions || req.questions.length !== 1) return reply(RCODE.SERVFAIL);
  const q = req.questions[0];
  if (!["AXFR", "IXFR", "SOA"].includes(q.type)) return reply(RCODE.NOTIMP);
  const zone = q.name.replace(/\.$/, "");
  const content = await lookup(zone, q.type !== "SOA").catch(() => undefined);
  if (!content) return reply(RCODE.NXDOMAIN);
  let tsig: TsigRequest | undefined;
  try {
    tsig = parseTsig(query);
  } catch {
    return reply(RCODE.FORMERR);
  }
  // The key of the peer the TSIG names ("<zone>_<peer>."), if any.
  const peer = tsig && /^(.*)_([^_.]+)$/.exec(tsig.keyName.replace(/\.$/, ""));
  const secret = peer && peer[1] === zone.toLowerCase() ? content.config[`peers.${peer[2]}.key`] : undefined;
  const verified = !!(tsig && secret && verifyTsig(tsig, secret));
  if (!allowedPeer(content.config, zone, remote, tsig && { name: tsig.keyName, verified })) return reply(RCODE.NXDOMAIN);
  let out: Buffer;
  try {
    out = reply(0, content.records);
  } catch {
    return reply(RCODE.FORMERR);
  }
  return tsig && verified ? signResponse(out, tsig, secret!) : out;
}

export class DnsServer {
  private udp?: UdpSocket;
  private tcp?: TcpServer;
  private readonly conns = new Set<Socket>();

  constructor(
    private readonly lookup: ZoneLookup,
    private readonly log: Logger,
  ) {}

  /** Listen on `address` (host:port, port 53 by default); "" stops listening. */
  async setAddress(address: string): Promise<void> {
    await this.close();
    if (!address) return;
    const { host, port } = splitHostPort(address, 53);
    const bindHost = host === "" ? "::" : host;
    const udp = createSocket({ type: bindHost.includes(":") ? "udp6" : "udp4", reuseAddr: false });
    udp.on("message", (msg, rinfo) => {
      if (msg.length > MAX_QUERY) return;
      void answer(msg, rinfo.address.replace(/^::ffff:/, ""), this.lookup).then((out) => out && udp.send(out, rinfo.port, rinfo.address));
    });
    udp.on("error", (err) => this.log.warn({ err }, "dns: udp socket error"));
    await new Promise<void>((resolve, reject) => {
      udp.once("error", reject);
      udp.bind(port, bindHost, () => {
        udp.off("error", reject);
        resolve();
      });
    });
    const tcp = createServer((sock) => this.serveTcp(sock));
    try {
      await new Promise<void>((resolve, reject) => {
        tcp.once("error", reject);
        tcp.listen(port, bindHost, () => {
          tcp.off("error", reject);
          resolve();
        });
      });
    } catch (e) {
      udp.close();
      throw e;
    }
    this.udp = udp;
    this.tcp = tcp;
    this.log.info({ address }, "dns: listening");
  }

  private serveTcp(sock: Socket): void {
    this.conns.add(sock);
    sock.setTimeout(TCP_IDLE_MS, () => sock.destroy());
    sock.on("close", () => this.conns.delete(sock));
    sock.on("error", () => sock.destroy());
    let buf = Buffer.alloc(0);
    sock.on("data", (chunk) => {
      buf = Buffer.concat([buf, chunk]);
      if (buf.length > MAX_QUERY + 2) return sock.destroy();
      while (buf.length >= 2) {
        const len = buf.readUInt16BE(0);
        if (buf.length < 2 + len) break;
        const msg = buf.subarray(2, 2 + len);
        buf = buf.subarray(2 + len);
        const remote = (sock.remoteAddress ?? "").replace(/^::ffff:/, "");
        void answer(msg, remote, this.lookup).then((out) => {
          if (!out || sock.destroyed) return;
          const head = Buffer.alloc(2);
          head.writeUInt16BE(out.length);
          sock.write(Buffer.concat([head, out]));
        });
      }
    });
  }

  async close(): Promise<void> {
    const udp = this.udp;
    const tcp = this.tcp;
    this.udp = undefined;
    this.tcp = undefined;
    for (const c of this.conns) c.destroy();
    if (udp) await new Promise<void>((r) => udp.close(() => r()));
    if (tcp) await new Promise<void>((r) => tcp.close(() => r()));
  }
}
