// /1.0/images and /1.0/images/aliases: parse, call the image service, answer.
import { z } from "zod";
import type { OperationManager } from "../../operations/manager.js";
import { validateAliasName } from "../../images/aliases.js";
import type { ImageService } from "../../images/service.js";
import type { ImagePublisher } from "../../images/publish.js";
import type { ImagePuller } from "../../images/pull.js";
import type { ImageSecrets } from "../../images/secrets.js";
import type { ImageRefresher } from "../../images/refresh.js";
import { receiveUpload } from "../../images/upload.js";
import { exportImage } from "./image-export.js";
import { ImageExportPost, pushImage, pushTokenMetadata, pushedFields, uploadSecret } from "../../images/push.js";
import type { EventHub } from "../../operations/events.js";
import { matchFilter, parseFilter } from "../../shared/filter.js";
import { BadRequest, Forbidden, InternalError, NotFound, NotImplemented } from "../../shared/errors.js";
import { decode } from "../../shared/json.js";
import { ImagesPost, type ImagesPostBody } from "../../shared/schemas/image.js";
import { checkEtag, created, handled, operation, route, sync, type ApiRequest, type Route } from "../route.js";

const isTrue = (v: string | string[] | undefined) => ["true", "1", "yes", "on"].includes(String(v ?? "").toLowerCase());

const StringMap = z.record(z.string());
const ImagePut = z.object({
  auto_update: z.boolean().optional(),
  properties: StringMap.nullable().optional(),
  public: z.boolean().optional(),
  expires_at: z.string().optional(),
  profiles: z.array(z.string()).nullable().optional(),
});
const AliasPost = z.object({
  name: z.string().optional().default(""),
  target: z.string().optional().default(""),
  description: z.string().optional().default(""),
  type: z.string().optional(),
});
const AliasPut = z.object({ target: z.string().optional().default(""), description: z.string().optional().default("") });
const AliasPatch = z.object({ target: z.string().optional(), description: z.string().optional() });
const AliasRename = z.object({ name: z.string().optional().default("") });


/** X-LXD-properties: url-encoded key=value pairs; the first value of a key wins, as Go's ParseQuery. */
function headerProperties(raw: string | string[] | undefined): Record<string, string> | undefined {
  if (raw === undefined) return undefined;
  const out: Record<string, string> = {};
  for (const h of Array.isArray(raw) ? raw : [raw]) {
    for (const [k, v] of new URLSearchParams(h)) if (!(k in out)) out[k] = v;
  }
  return out;
}

export interface ImageRouteDeps {
  images: ImageService;
  operations: OperationManager;
  publisher: ImagePublisher;
  /** Bytes a project may still write as images (its limits.disk less what it uses), -1 for no limit. */
  imageSpaceBudget?: (project: string) => number;
  puller: ImagePuller;
  secrets: ImageSecrets;
  refresher: ImageRefresher;
  events: EventHub;
}

export function imageRoutes({ images, operations, publisher, imageSpaceBudget, puller, secrets, refresher, events }: ImageRouteDeps): Route[] {
  /** The project whose images a request sees (features.images=false shares default's). */
  const proj = (req: ApiRequest) => images.projectFor(req.project);
  const imageUrl = (fp: string) => `/1.0/images/${fp}`;
  const aliasUrl = (name: string) => `/1.0/images/aliases/${encodeURIComponent(name)}`;
  /**
   * Untrusted clients see public images, and a private one with its secret (?secret=, from
   * POST /1.0/images/{fp}/secret); anything else is "not found" to them. A secret is used up
   * by whoever presents it, as LXD does.
   */
  const visible = async (req: ApiRequest) => {
    const row = images.byPrefix(proj(req), req.params.fingerprint);
    const secret = typeof req.query.secret === "string" ? req.query.secret : undefined;
    const opened = await secrets.use(req.project, row.fingerprint, secret);
    if (!req.requestor.trusted && !row.public && !opened) throw new NotFound("Image not found");
    return row;
  };
  const etagOf = (v: { public: boolean; auto_update: boolean; properties: Record<string, string> }) => [v.public, v.auto_update, v.properties];

  const updateImage = (patch: boolean) => async (req: ApiRequest) => {
    const row = images.byPrefix(proj(req), req.params.fingerprint);
    checkEtag(req, etagOf(row));
    images.edit(row, await req.body(ImagePut, "ImagePut"), { patch, requestor: req.requestor, requestProject: req.project });
    return sync({});
  };

  /** POST /1.0/images from an image server (source.type "image", mode "pull") or a URL (LXD's imgPostRemoteInfo/imgPostURLInfo). */
  const pullImage = (req: ApiRequest, body: ImagesPostBody) => {
    const src = body.source;
    if (src.type === "image" && (src.mode ?? "pull") !== "pull") throw new NotImplemented(`Image copy mode "${src.mode}" is not supported`);
    if (src.type === "image" && !src.server) throw new BadRequest("Missing server");
    const project = proj(req);
    for (const a of body.aliases ?? []) validateAliasName(a.name);
    return operations.create({
      class: "task",
      description: "Downloading image",
      project: req.project,
      mayCancel: true,
      run: async (ctx) => {
        const common = { public: body.public, autoUpdate: body.auto_update, aliases: body.aliases ?? [], signal: ctx.signal, onMetadata: ctx.updateMetadata, requestor: req.requestor };
        const row =
          src.type === "url"
            ? await puller.pullUrl(project, src.url ?? "", common)
            : await puller.pull(project, { server: src.server!, protocol: src.protocol, alias: src.alias, fingerprint: src.fingerprint, certificate: src.certificate, secret: src.secret, project: src.project, type: src.image_type ?? "" }, common);
        // As LXD: the request's properties, profiles, public and auto_update apply to the stored image.
        const props = body.properties ?? {};
        if (body.public || body.auto_update || Object.keys(props).length > 0 || (body.profiles && body.profiles.length > 0)) {
          images.update(project, row.fingerprint, {
            public: body.public || row.public,
            auto_update: body.auto_update || row.auto_update,
            properties: { ...row.properties, ...props },
            profiles: body.profiles && body.profiles.length > 0 ? body.profiles : row.profiles,
          }, req.requestor);
        }
        // Aliases of an image that was already here (a fresh download recorded them with the image).
        for (const a of body.aliases ?? []) {
          if (!images.aliases.exists(project, a.name)) images.aliases.create(project, a.name, row.fingerprint, a.description, req.requestor);
          else if (images.aliases.get(project, a.name).fingerprint !== row.fingerprint) throw new Error(`Alias already exists: ${a.name}`);
        }
        return { fingerprint: row.fingerprint, size: String(row.size) };
      },
    });
  };

  const aliasView = (a: { name: string; fingerprint: string; description: string }, project: string) => ({
    description: a.description,
    target: a.fingerprint,
    name: a.name,
    type: images.byPrefix(project, a.fingerprint).type,
  });

  return [
    route(
      "/1.0/images",
      {
        GET: (req) => {
          const clauses = parseFilter(req.query.filter ?? "");
          const list = images.list(proj(req), !req.requestor.trusted).filter((v) => matchFilter(v, clauses));
          return sync(req.recursion > 0 ? list : list.map((v) => imageUrl(v.fingerprint)));
        },
        POST: async (req) => {
          // An untrusted peer may only upload an image it holds a push token for (LXD's
          // imagesPost): X-LXD-fingerprint and X-LXD-secret name it; the token is used up
          // whoever presents it, and its metadata says what the pushed image gets.
          const header = (name: string) => {
            const v = req.headers[name];
            return typeof v === "string" ? v : "";
          };
          const pushSecret = header("x-lxd-secret");
          const pushFingerprint = header("x-lxd-fingerprint");
          if (!req.requestor.trusted && (pushSecret === "" || pushFingerprint === "")) throw new Forbidden();
          const token = pushSecret !== "" && pushFingerprint !== "" ? await secrets.claim(req.project, pushFingerprint, pushSecret) : undefined;
          if (!token && !req.requestor.trusted) throw new Forbidden();
          const received = await receiveUpload(images.dir, req.stream, req.headers, imageSpaceBudget?.(req.project) ?? -1);
          if (received.kind === "json") {
            const body = decode(ImagesPost, received.body, "ImagesPost");
            const type = body.source.type;
            // The target of `lxc image copy --mode push`: a token the source will present.
            if (body.source.mode === "push") {
              if (!req.requestor.trusted) throw new Forbidden();
              return operation(secrets.create(req.project, body.source.fingerprint ?? "", req.requestor, pushTokenMetadata(body)));
            }
            if (["container", "instance", "virtual-machine", "snapshot"].includes(type)) return operation(publisher.publish(req.project, body, req.requestor));
            if (type === "image" || type === "url") return operation(pullImage(req, body));
            throw new InternalError("Invalid images JSON");
          }
          const expected = req.headers["x-lxd-fingerprint"];
          const pushed = token ? pushedFields(token) : undefined;
          const view = operations.create({
            class: "task",
            description: "Downloading image",
            project: req.project,
            // A pushed upload's operation can be waited on by its (untrusted) sender with this.
            metadata: pushed ? { secret: uploadSecret() } : undefined,
            run: async (ctx) => {
              const image = await images.importer.importUpload(proj(req), received, {
                public: pushed?.public ?? isTrue(req.headers["x-lxd-public"]),
                expectedFingerprint: expected ? String(expected) : undefined,
                baseProperties: pushed?.properties,
                expiresAt: pushed?.expiresAt,
                properties: headerProperties(req.headers["x-lxd-properties"]),
                profiles: new URLSearchParams(String(req.headers["x-lxd-profiles"] ?? "")).getAll("profile"),
                requestProject: req.project,
                requestor: req.requestor,
                signal: ctx.signal,
                onIdentified: (m) => ctx.updateMetadata(m),
              });
              for (const a of pushed?.aliases ?? []) {
                if (images.aliases.exists(proj(req), a.name)) throw new Error(`Alias already exists: ${a.name}`);
                images.aliases.create(proj(req), a.name, image.fingerprint, a.description, req.requestor);
              }
              return { fingerprint: image.fingerprint, size: String(image.size) };
            },
          });
          return operation(view);
        },
      },
      { GET: "public", POST: "public" },
      { feature: "images" },
    ),
    route(
      "/1.0/images/:fingerprint",
      {
        GET: async (req) => {
          const row = await visible(req);
          return sync(images.view(row), { etag: etagOf(row) });
        },
        PUT: updateImage(false),
        PATCH: updateImage(true),
        DELETE: (req) => {
          const row = images.byPrefix(proj(req), req.params.fingerprint);
          const view = operations.create({
            class: "task",
            description: "Deleting image",
            project: req.project,
            resources: { images: [imageUrl(row.fingerprint)] },
            run: async () => {
              await images.delete(proj(req), row.fingerprint, req.requestor);
            },
          });
          return operation(view);
        },
      },
      { GET: "public", PUT: "project", PATCH: "project", DELETE: "project" },
      { feature: "images" },
    ),
    route(
      "/1.0/images/:fingerprint/export",
      {
        GET: async (req, reply) => {
          const row = await visible(req);
          await exportImage(images, row, req, reply);
          return handled();
        },
        // `lxc image copy --mode push`: send the image to another server (LXD's imageExportPost).
        POST: async (req) => {
          const row = images.byPrefix(proj(req), req.params.fingerprint);
          const body = await req.body(ImageExportPost, "ImageExportPost");
          return operation(
            operations.create({
              class: "task",
              description: "Downloading image",
              project: req.project,
              resources: { images: [imageUrl(row.fingerprint)] },
              run: async (ctx) => {
                await pushImage({ images, events }, row, body, { signal: ctx.signal, requestor: req.requestor });
              },
            }),
          );
        },
      },
      { GET: "public", POST: "project" },
      { feature: "images" },
    ),
    route("/1.0/images/:fingerprint/refresh", {
      POST: (req) => {
        const row = images.byPrefix(proj(req), req.params.fingerprint);
        return operation(
          operations.create({
            class: "task",
            description: "Refreshing image",
            project: req.project,
            run: async (ctx) => {
              try {
                await refresher.refresh(row.project, row.fingerprint, { signal: ctx.signal, onMetadata: ctx.updateMetadata, requestor: req.requestor });
              } catch (e) {
                throw new Error(`Failed to update image "${row.fingerprint}" in project "${req.project}": ${(e as Error).message}`);
              }
            },
          }),
        );
      },
    }, "project", { feature: "images" }),
    route("/1.0/images/:fingerprint/secret", {
      POST: (req) => {
        const row = images.byPrefix(proj(req), req.params.fingerprint);
        return operation(secrets.create(req.project, row.fingerprint, req.requestor));
      },
    }, "project", { feature: "images" }),
    route("/1.0/images/aliases", {
      GET: (req) => {
        const list = images.aliases.list(proj(req));
        return sync(req.recursion > 0 ? list.map((a) => aliasView(a, proj(req))) : list.map((a) => aliasUrl(a.name)));
      },
      POST: async (req) => {
        const body = await req.body(AliasPost, "ImageAliasesPost");
        if (body.name === "" || body.target === "") throw new BadRequest("name and target are required");
        images.aliases.create(proj(req), body.name, body.target, body.description, req.requestor);
        return created(aliasUrl(body.name), null);
      },
    }, "project", { feature: "images" }),
    route(
      "/1.0/images/aliases/:name",
      {
        GET: (req) => {
          const alias = images.aliases.get(proj(req), req.params.name);
          const image = images.byPrefix(proj(req), alias.fingerprint);
          if (!req.requestor.trusted && !image.public) throw new NotFound("Image alias not found");
          const view = aliasView(alias, proj(req));
          return sync(view, { etag: view });
        },
        PUT: async (req) => {
          const alias = images.aliases.get(proj(req), req.params.name);
          checkEtag(req, aliasView(alias, proj(req)));
          const body = await req.body(AliasPut, "ImageAliasesEntryPut");
          if (body.target === "") throw new BadRequest("The target field is required");
          images.aliases.update(proj(req), alias.name, body.target, body.description, req.requestor);
          return sync({});
        },
        PATCH: async (req) => {
          const alias = images.aliases.get(proj(req), req.params.name);
          checkEtag(req, aliasView(alias, proj(req)));
          const body = await req.body(AliasPatch, "ImageAliasesEntryPut");
          images.aliases.update(proj(req), alias.name, body.target ?? alias.fingerprint, body.description ?? alias.description, req.requestor);
          return sync({});
        },
        POST: async (req) => {
          const body = await req.body(AliasRename, "ImageAliasesEntryPost");
          images.aliases.rename(proj(req), req.params.name, body.name, req.requestor);
          return created(aliasUrl(body.name), null);
        },
        DELETE: (req) => {
          images.aliases.delete(proj(req), req.params.name, req.requestor);
          return sync({});
        },
      },
      { GET: "public", PUT: "project", PATCH: "project", POST: "project", DELETE: "project" },
      { feature: "images" },
    ),
  ];
}
