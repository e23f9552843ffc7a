import { describe, expect, it } from "vitest";
import { z } from "zod";
import { decode, goSyntaxError } from "../../src/shared/json.js";

describe("goSyntaxError", () => {
  it.each([
    ["{bad", "invalid character 'b' looking for beginning of object key string"],
    ["{", "unexpected end of JSON input"],
    ['{"a" 1}', "invalid character '1' after object key"],
    ['{"a":1 "b":2}', "invalid character '\"' after object key:value pair"],
    ["[1 2]", "invalid character '2' after array element"],
    ['{"a":1,}', "invalid character '}' looking for beginning of object key string"],
    ["[1,]", "invalid character ']' looking for beginning of value"],
    ['{"a":[1,{"b":}]}', "invalid character '}' looking for beginning of value"],
    ["[", "unexpected end of JSON input"],
    ["nul", "unexpected end of JSON input"],
    ["nope", "invalid character 'o' in literal null (expecting 'u')"],
    ["x", "invalid character 'x' looking for beginning of value"],
    ["{} x", "invalid character 'x' after top-level value"],
  ])("%s", (input, message) => {
    expect(() => JSON.parse(input)).toThrow();
    expect(goSyntaxError(input)).toBe(message);
  });
});

describe("decode", () => {
  const Profile = z.object({ name: z.string() });
  it("reports type mismatches like Go's encoding/json", () => {
    expect(() => decode(Profile, { name: 5 }, "ProfilesPost")).toThrow(
      "json: cannot unmarshal number into Go struct field ProfilesPost.name of type string",
    );
  });
  it("returns the parsed value", () => {
    expect(decode(Profile, { name: "x" }, "ProfilesPost")).toEqual({ name: "x" });
  });
});
