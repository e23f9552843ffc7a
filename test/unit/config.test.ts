import { describe, expect, it } from "vitest";
import { validateConfig } from "../../src/config/keys.js";
import { serverKeys } from "../../src/config/server-keys.js";
import { splitHostPort } from "../../src/config/validators.js";

describe("server config validation", () => {
  const check = (config: Record<string, string>) => () => validateConfig(serverKeys, config);
  it("rejects unknown keys as LXD does", () => {
    expect(check({ foo: "bar" })).toThrow("cannot set 'foo' to 'bar': unknown key");
  });
  it("rejects bad values with LXD's reasons", () => {
    expect(check({ "core.https_address": "nope" })).toThrow(`cannot set 'core.https_address' to 'nope': Couldn't resolve "nope"`);
    expect(check({ "core.shutdown_timeout": "x" })).toThrow("invalid integer");
    expect(check({ "core.trust_ca_certificates": "maybe" })).toThrow("invalid boolean");
    expect(check({ "images.compression_algorithm": "rar" })).toThrow('Invalid compression algorithm "rar"');
  });
  it("accepts good values and empty (unset) values", () => {
    expect(check({ "core.https_address": "127.0.0.1:8443", "core.shutdown_timeout": "5", "images.auto_update_cached": "false", "core.proxy_http": "" })).not.toThrow();
    expect(check({ "core.https_address": "[::1]:9443" })).not.toThrow();
    expect(check({ "core.https_address": ":8443" })).not.toThrow();
  });
  it("splits listen addresses", () => {
    expect(splitHostPort("127.0.0.1:8443")).toEqual({ host: "127.0.0.1", port: 8443 });
    expect(splitHostPort("[::1]:1")).toEqual({ host: "::1", port: 1 });
    expect(splitHostPort("127.0.0.1")).toEqual({ host: "127.0.0.1", port: 8443 });
    expect(splitHostPort(":7")).toEqual({ host: "", port: 7 });
  });
});
