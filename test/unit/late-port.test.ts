// The wiring's one late-binding mechanism: a stand-in handed out before its provider exists.
import { describe, expect, it } from "vitest";
import { latePort } from "../../src/daemon/late-port.js";

interface Greeter {
  name: string;
  greet(who: string): string;
  maybe?(): string;
}

describe("latePort", () => {
  it("refuses a call before the provider is bound, then forwards to it (methods keep their `this`)", () => {
    const late = latePort<Greeter>("greeter");
    expect(() => late.port.greet("a")).toThrow("The greeter port was used before the daemon wired it");
    class Provider implements Greeter {
      name = "p";
      greet(who: string) {
        return `${this.name} greets ${who}`;
      }
    }
    late.bind(new Provider());
    const greet = late.port.greet;
    expect(greet("b")).toBe("p greets b");
    expect(late.port.name).toBe("p");
    expect(late.port.maybe).toBeUndefined();
  });

  it("is bound once", () => {
    const late = latePort<Greeter>("greeter");
    late.bind({ name: "x", greet: () => "" });
    expect(() => late.bind({ name: "y", greet: () => "" })).toThrow("The greeter port is wired twice");
  });
});
