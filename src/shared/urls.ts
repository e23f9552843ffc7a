// API URLs as LXD builds them (api.NewURL().Path(...).Project(p)): each path part escaped on its own,
// and `?project=P` only outside the default project. The one place that writes a `?project=` suffix.

const HEX = "0123456789ABCDEF";

/** Go's net/url escaping: unreserved bytes stay, `keep` stays, `space` replaces " ", the rest is %XX of each UTF-8 byte. */
function goEscape(s: string, keep: string, space: string): string {
  if (/^[A-Za-z0-9\-_.~]*$/.test(s)) return s;
  let out = "";
  for (const b of Buffer.from(s, "utf8")) {
    const c = String.fromCharCode(b);
    if (/[A-Za-z0-9\-_.~]/.test(c) || keep.includes(c)) out += c;
    else if (c === " ") out += space;
    else out += "%" + HEX[b >> 4] + HEX[b & 15];
  }
  return out;
}

/** Go's url.PathEscape: one path segment (`/ ; , ?` escaped, `$ & + : = @` kept). */
export const pathEscape = (s: string): string => goEscape(s, "$&+:=@", "%20");

/** Go's url.QueryEscape: one query value (space as `+`). */
export const queryEscape = (s: string): string => goEscape(s, "", "+");

/** `?project=P`, or nothing for the default project (or none given). */
export function projectQuery(project: string | undefined): string {
  return project === undefined || project === "" || project === "default" ? "" : `?project=${queryEscape(project)}`;
}

/** LXD's entity URIs (db/cluster EntityURIs, warnings' entity_url): `?project=P` always, the default project too, unescaped. */
export function entityProjectQuery(project: string): string {
  return `?project=${project}`;
}

/** `/1.0/PART/PART…[?project=P]`: the URL of an API object of `project`; parts are names, escaped one by one. */
export function apiUrl(project: string | undefined, ...parts: string[]): string {
  return `/1.0/${parts.map(pathEscape).join("/")}${projectQuery(project)}`;
}

/** An API url with `?target=<member>` added (after the project, if any). */
export function withTarget(url: string, member: string): string {
  return `${url}${url.includes("?") ? "&" : "?"}target=${queryEscape(member)}`;
}
