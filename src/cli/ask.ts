// Questions on stdin as LXD's CLI asks them (shared/cmd/ask.go): the question on stdout, one line
// read, an empty answer takes the default, a bad answer prints "Invalid input, try again." on stderr
// and asks again; the end of stdin is an error ("EOF"), as Go's reader reports it.
import { createInterface } from "node:readline";

export class Asker {
  private readonly lines: string[] = [];
  private waiting?: (line: string | undefined) => void;
  private ended = false;

  constructor(input: NodeJS.ReadableStream = process.stdin) {
    const rl = createInterface({ input, terminal: false });
    rl.on("line", (l) => {
      if (this.waiting) {
        const w = this.waiting;
        this.waiting = undefined;
        w(l);
      } else this.lines.push(l);
    });
    rl.on("close", () => {
      this.ended = true;
      this.waiting?.(undefined);
    });
  }

  private next(): Promise<string | undefined> {
    if (this.lines.length) return Promise.resolve(this.lines.shift());
    if (this.ended) return Promise.resolve(undefined);
    return new Promise((r) => (this.waiting = r));
  }

  private async question(q: string, defaultAnswer: string): Promise<string> {
    process.stdout.write(q);
    const line = await this.next();
    if (line === undefined) throw new Error("EOF");
    const answer = line.trim();
    return answer === "" ? defaultAnswer : answer;
  }

  async bool(q: string, defaultAnswer: string): Promise<boolean> {
    for (;;) {
      const a = (await this.question(q, defaultAnswer)).toLowerCase();
      if (a === "yes" || a === "y") return true;
      if (a === "no" || a === "n") return false;
      process.stderr.write("Invalid input, try again.\n\n");
    }
  }

  async choice(q: string, choices: string[], defaultAnswer: string): Promise<string> {
    for (;;) {
      const a = await this.question(q, defaultAnswer);
      if (choices.includes(a)) return a;
      process.stderr.write("Invalid input, try again.\n\n");
    }
  }

  async int(q: string, min: number, max: number, defaultAnswer: string): Promise<number> {
    for (;;) {
      const a = await this.question(q, defaultAnswer);
      if (!/^[+-]?\d+$/.test(a)) {
        process.stderr.write(`Invalid input: strconv.ParseInt: parsing ${JSON.stringify(a)}: invalid syntax\n\n`);
        continue;
      }
      const n = Number(a);
      if (!((min === -1 || n >= min) && (max === -1 || n <= max))) {
        process.stderr.write("Invalid input: out of range\n\n");
        continue;
      }
      return n;
    }
  }

  async string(q: string, defaultAnswer: string, validate?: (v: string) => string | undefined): Promise<string> {
    for (;;) {
      const a = await this.question(q, defaultAnswer);
      if (validate) {
        const err = validate(a);
        if (err === undefined) return a;
        process.stderr.write(`Invalid input: ${err}\n\n`);
        continue;
      }
      if (a.length) return a;
      process.stderr.write("Invalid input, try again.\n\n");
    }
  }
}
