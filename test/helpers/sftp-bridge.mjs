// sftp-bridge.mjs SOCKET INSTANCE: stdio ↔ the daemon's /1.0/instances/INSTANCE/sftp upgrade,
// so OpenSSH's `sftp -D` can talk to it.
import { connect } from "node:net";

const [socketPath, instance] = process.argv.slice(2);
const sock = connect(socketPath, () => {
  sock.write(`GET /1.0/instances/${instance}/sftp HTTP/1.1\r\nHost: lxd\r\nUpgrade: sftp\r\nConnection: Upgrade\r\n\r\n`);
});
let head = Buffer.alloc(0);
let switched = false;
sock.on("data", (chunk) => {
  if (switched) return void process.stdout.write(chunk);
  head = Buffer.concat([head, chunk]);
  const end = head.indexOf("\r\n\r\n");
  if (end < 0) return;
  const status = head.subarray(0, head.indexOf("\r\n")).toString();
  if (!status.includes(" 101 ")) {
    process.stderr.write(head.toString());
    process.exit(1);
  }
  switched = true;
  const rest = head.subarray(end + 4);
  if (rest.length) process.stdout.write(rest);
  process.stdin.pipe(sock);
});
sock.on("close", () => process.exit(0));
sock.on("error", (e) => {
  process.stderr.write(String(e));
  process.exit(1);
});
