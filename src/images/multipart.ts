// A streaming multipart/form-data reader for split image uploads (`lxc image import META
// ROOTFS` sends a "metadata" part then a "rootfs" part). Part bodies are handed to a sink
// chunk by chunk, so a multi-gigabyte rootfs never sits in memory.
import { BadRequest } from "../shared/errors.js";

export interface PartSink {
  write(chunk: Buffer): Promise<void>;
  close(): Promise<void>;
}

export interface PartInfo {
  name: string;
  filename: string;
}

const HEADER_LIMIT = 16 * 1024;

export function boundaryOf(contentType: string): string | undefined {
  const m = /;\s*boundary=(?:"([^"]+)"|([^;\s]+))/i.exec(contentType);
  return m ? (m[1] ?? m[2]) : undefined;
}

function parsePartHeaders(text: string): PartInfo {
  let name = "";
  let filename = "";
  for (const line of text.split("\r\n")) {
    const colon = line.indexOf(":");
    if (colon === -1 || line.slice(0, colon).trim().toLowerCase() !== "content-disposition") continue;
    const value = line.slice(colon + 1);
    const n = /;\s*name="((?:[^"\\]|\\.)*)"/i.exec(value) ?? /;\s*name=([^;\s]+)/i.exec(value);
    const f = /;\s*filename="((?:[^"\\]|\\.)*)"/i.exec(value) ?? /;\s*filename=([^;\s]+)/i.exec(value);
    if (n) name = n[1].replace(/\\(.)/g, "$1");
    if (f) filename = f[1].replace(/\\(.)/g, "$1");
  }
  return { name, filename };
}

/** Read every part of `stream`; `open` gives the sink for each part (in order). */
export async function readMultipart(stream: AsyncIterable<Buffer>, boundary: string, open: (part: PartInfo, index: number) => PartSink): Promise<number> {
  const delim = Buffer.from(`\r\n--${boundary}`);
  let buf: Buffer = Buffer.from("\r\n");
  let state = "preamble" as "preamble" | "after" | "headers" | "body" | "done";
  let sink: PartSink | undefined;
  let index = 0;
  try {
    const step = async (): Promise<boolean> => {
      switch (state) {
        case "preamble": {
          const i = buf.indexOf(delim);
          if (i === -1) {
            buf = buf.subarray(Math.max(0, buf.length - delim.length + 1));
            return false;
          }
          buf = buf.subarray(i + delim.length);
          state = "after";
          return true;
        }
        case "after": {
          if (buf.length < 2) return false;
          if (buf[0] === 0x2d && buf[1] === 0x2d) {
            state = "done";
            return false;
          }
          const eol = buf.indexOf("\r\n");
          if (eol === -1) {
            if (buf.length > 256) throw new BadRequest("Invalid multipart image");
            return false;
          }
          buf = buf.subarray(eol + 2);
          state = "headers";
          return true;
        }
        case "headers": {
          const end = buf.indexOf("\r\n\r\n");
          const empty = buf.subarray(0, 2).toString() === "\r\n";
          if (end === -1 && !empty) {
            if (buf.length > HEADER_LIMIT) throw new BadRequest("Invalid multipart image");
            return false;
          }
          const headerText = empty ? "" : buf.toString("utf8", 0, end);
          buf = buf.subarray(empty ? 2 : end + 4);
          sink = open(parsePartHeaders(headerText), index++);
          state = "body";
          return true;
        }
        case "body": {
          const i = buf.indexOf(delim);
          if (i === -1) {
            const keep = delim.length - 1;
            if (buf.length > keep) {
              await sink!.write(Buffer.from(buf.subarray(0, buf.length - keep)));
              buf = buf.subarray(buf.length - keep);
            }
            return false;
          }
          if (i > 0) await sink!.write(Buffer.from(buf.subarray(0, i)));
          await sink!.close();
          sink = undefined;
          buf = buf.subarray(i + delim.length);
          state = "after";
          return true;
        }
        default:
          return false;
      }
    };
    for await (const chunk of stream) {
      if (state === "done") continue;
      buf = buf.length ? Buffer.concat([buf, chunk]) : chunk;
      while (await step());
    }
    if (state !== "done") throw new BadRequest("Invalid multipart image");
    return index;
  } finally {
    if (sink) await sink.close().catch(() => {});
  }
}
