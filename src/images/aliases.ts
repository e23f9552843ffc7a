// Image aliases (/1.0/images/aliases): names per project pointing at an image of that project.
import type { AliasRow, ImageRecordRow, ImageRepo } from "../db/image-repo.js";
import type { EventHub } from "../operations/events.js";
import { BadRequest, Conflict, NotFound } from "../shared/errors.js";
import type { Requestor } from "../shared/requestor.js";
import { eventRequestor } from "./record.js";

export interface ImageAliasesDeps {
  repo: ImageRepo;
  events: Pick<EventHub, "lifecycle">;
  /** An image of a project by unique fingerprint prefix (LXD's errors otherwise). */
  byPrefix(project: string, prefix: string): ImageRecordRow;
}

/** Alias names may not be empty; slashes are fine (LXD 5.0.2 accepts "debian/12"), control characters are not. */
export function validateAliasName(name: string): void {
  if (name === "") throw new BadRequest("Alias name can't be empty");
  if (/[\x00-\x1f\x7f]/.test(name)) throw new BadRequest("Alias names can't contain control characters");
}

export class ImageAliases {
  constructor(private readonly deps: ImageAliasesDeps) {}

  private get repo(): ImageRepo {
    return this.deps.repo;
  }

  list(project: string): AliasRow[] {
    return this.repo.aliases(project);
  }

  get(project: string, name: string): AliasRow {
    return this.repo.alias(project, name) ?? aliasNotFound();
  }

  exists(project: string, name: string): boolean {
    return this.repo.alias(project, name) !== undefined;
  }

  create(project: string, name: string, target: string, description: string, requestor?: Requestor): AliasRow {
    validateAliasName(name);
    if (this.repo.alias(project, name)) throw new Conflict(`Alias "${name}" already exists`);
    const image = this.deps.byPrefix(project, target);
    const row = { project, name, fingerprint: image.fingerprint, description };
    this.repo.insertAlias(row);
    this.deps.events.lifecycle("image-alias-created", `/1.0/images/aliases/${name}`, { project, context: { target: image.fingerprint }, requestor: eventRequestor(requestor) });
    return row;
  }

  update(project: string, name: string, target: string, description: string, requestor?: Requestor): AliasRow {
    this.get(project, name);
    const image = this.deps.byPrefix(project, target);
    this.repo.updateAlias(project, name, image.fingerprint, description);
    this.deps.events.lifecycle("image-alias-updated", `/1.0/images/aliases/${name}`, { project, context: { target: image.fingerprint }, requestor: eventRequestor(requestor) });
    return this.get(project, name);
  }

  rename(project: string, name: string, to: string, requestor?: Requestor): void {
    validateAliasName(to);
    if (this.repo.alias(project, to)) throw new Conflict(`Alias "${to}" already exists`);
    this.get(project, name);
    this.repo.renameAlias(project, name, to);
    this.deps.events.lifecycle("image-alias-renamed", `/1.0/images/aliases/${to}`, { project, context: { old_name: name }, requestor: eventRequestor(requestor) });
  }

  delete(project: string, name: string, requestor?: Requestor): void {
    if (!this.repo.deleteAlias(project, name)) aliasNotFound();
    this.deps.events.lifecycle("image-alias-deleted", `/1.0/images/aliases/${name}`, { project, requestor: eventRequestor(requestor) });
  }
}

function aliasNotFound(): never {
  throw new NotFound("Image alias not found");
}
