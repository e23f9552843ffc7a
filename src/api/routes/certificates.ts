import { z } from "zod";
import type { CertificateService } from "../../daemon/certificate-service.js";
import { TrustStore } from "../../daemon/trust.js";
import { checkEtag, created, operation, route, sync, type ApiRequest, type Route } from "../route.js";
import { decode } from "../../shared/json.js";

const Projects = z
  .array(z.string())
  .nullish()
  .transform((p) => p ?? []);

const CertificatePut = z
  .object({
    name: z.string().default(""),
    type: z.string().default(""),
    restricted: z.boolean().default(false),
    projects: Projects,
    certificate: z.string().default(""),
  })
  .passthrough();

const CertificatesPost = CertificatePut.extend({
  password: z.string().default(""),
  token: z.boolean().default(false),
}).passthrough();

export function certificateRoutes(certs: CertificateService): Route[] {
  const update = (mode: "replace" | "merge") => async (req: ApiRequest) => {
    const current = certs.get(req.params.fingerprint, req.requestor);
    checkEtag(req, current);
    const raw = await req.json();
    const merged = mode === "merge" && raw && typeof raw === "object" ? { ...current, ...(raw as object) } : raw;
    const body = decode(CertificatePut, merged, "CertificatePut");
    certs.update(req.params.fingerprint, body, req.requestor);
    return sync({});
  };
  return [
    route(
      "/1.0/certificates",
      {
        GET: (req) => {
          const list = certs.list(req.requestor);
          return sync(req.recursion > 0 ? list : list.map((c) => `/1.0/certificates/${c.fingerprint}`));
        },
        POST: async (req) => {
          const body = await req.body(CertificatesPost, "CertificatesPost");
          const result = await certs.add(body, {
            requestor: req.requestor,
            peerCertificate: TrustStore.peerCertificate(req.stream),
            remoteAddress: req.requestor.address,
          });
          if ("operation" in result) return operation(result.operation);
          return created(`/1.0/certificates/${result.fingerprint}`, null);
        },
      },
      { GET: "authenticated", POST: "untrusted" },
    ),
    route("/1.0/certificates/:fingerprint", {
      GET: (req) => {
        const c = certs.get(req.params.fingerprint, req.requestor);
        return sync(c, { etag: c });
      },
      PUT: update("replace"),
      PATCH: update("merge"),
      DELETE: (req) => {
        certs.delete(req.params.fingerprint, req.requestor);
        return sync({});
      },
    }, { GET: "authenticated", PUT: "authenticated", PATCH: "authenticated", DELETE: "admin" }),
  ];
}
