import type { ProfileService } from "../../profiles/profile-service.js";
import { ProfilePost, ProfilePut, ProfilesPost } from "../../shared/schemas/profiles.js";
import { checkEtag, created, route, sync, type ApiRequest, type Route } from "../route.js";
import { apiUrl } from "../../shared/urls.js";

export function profileRoutes(profiles: ProfileService): Route[] {
  const update = (mode: "replace" | "merge") => async (req: ApiRequest) => {
    const body = await req.body(ProfilePut, "ProfilePut");
    const notFound = mode === "replace" ? `Failed to retrieve profile "${req.params.name}": Profile not found` : `Failed to retrieve profile="${req.params.name}": Profile not found`;
    const current = profiles.find(req.project, req.params.name, notFound);
    checkEtag(req, profiles.etagOf(current));
    await profiles.update(req.project, current, body, mode);
    return sync({});
  };
  return [
    route("/1.0/profiles", {
      GET: (req) => {
        const list = profiles.list(req.project);
        return sync(req.recursion > 0 ? list.map((p) => profiles.view(req.project, p)) : list.map((p) => apiUrl(req.project, "profiles", p.name)));
      },
      POST: async (req) => {
        const body = await req.body(ProfilesPost, "ProfilesPost");
        profiles.create(req.project, body);
        return created(`/1.0/profiles/${body.name}`, null);
      },
    }, "project", { feature: "profiles" }),
    route("/1.0/profiles/:name", {
      GET: (req) => {
        const p = profiles.find(req.project, req.params.name, "Fetch profile: Profile not found");
        return sync(profiles.view(req.project, p), { etag: profiles.etagOf(p) });
      },
      PUT: update("replace"),
      PATCH: update("merge"),
      POST: async (req) => {
        const body = await req.body(ProfilePost, "ProfilePost");
        profiles.rename(req.project, req.params.name, body.name);
        return created(`/1.0/profiles/${body.name}`, null);
      },
      DELETE: (req) => {
        profiles.delete(req.project, req.params.name);
        return sync({});
      },
    }, "project", { feature: "profiles" }),
  ];
}
