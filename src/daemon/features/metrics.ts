// GET /1.0/metrics (LXD 5.0.2): Prometheus text for the running instances of one project (or
// every project), readable by trusted clients, by certificates of type "metrics", and by anyone
// once core.metrics_authentication=false. A project's figures are cached for 8 seconds, as LXD
// does, and one gathering serves every request waiting for it.
import type { Core, Feature } from "../feature.js";
import type { InstancesPort } from "../../ports.js";
import { Forbidden } from "../../shared/errors.js";
import { handled, route, type Route } from "../../api/route.js";
import { hostCgroupLayout } from "../../instances/lxc/cgroup.js";
import { hostView, instanceMetrics, metricsFiles } from "../../metrics/gather.js";
import { native } from "../../os/native.js";
import { MetricSet } from "../../metrics/metric-set.js";

const CACHE_MS = 8000;

export class MetricsService {
  private cache = new Map<string, { set: MetricSet; expiry: number }>();
  private gathering?: Promise<void>;

  constructor(
    private readonly core: Core,
    private readonly instances: Pick<InstancesPort, "running">,
  ) {}

  private projects(): string[] {
    return (this.core.db.prepare("SELECT name FROM projects ORDER BY name").all() as { name: string }[]).map((r) => r.name);
  }

  /** The metrics text for `projects` (every project when undefined). */
  async text(projects?: string[]): Promise<string> {
    const names = projects ?? this.projects();
    const stale = () => names.filter((p) => (this.cache.get(p)?.expiry ?? 0) < Date.now());
    // Twice at most: a gathering already under way may have read before this request's change
    // of heart; a project no gathering knows (a name that is not a project) stays empty.
    for (let round = 0; round < 2 && stale().length > 0; round++) {
      if (!this.gathering) {
        this.gathering = Promise.resolve()
          .then(() => this.gather())
          .finally(() => (this.gathering = undefined));
      }
      await this.gathering;
    }
    const out = new MetricSet();
    for (const p of names) out.merge(this.cache.get(p)?.set);
    return out.toString();
  }

  /**
   * One pass over every running instance: all projects are refreshed together. Every instance's
   * files are read at once, off the event loop (first each /proc/PID/cgroup, then the files named
   * by the cgroups found there).
   */
  private async gather(): Promise<void> {
    const running = this.instances.running();
    const layout = hostCgroupLayout();
    const host = hostView();
    const cgroups = await native.readSmallFiles(running.map((inst) => `/proc/${inst.pid}/cgroup`));
    const files = running.flatMap((inst, i) => metricsFiles(layout, inst.pid, cgroups[i] ?? ""));
    const texts = await native.readSmallFiles(files);
    const byPath = new Map(files.map((f, i) => [f, texts[i] ?? undefined]));
    const readFile = (f: string) => byPath.get(f);
    const sets = new Map<string, MetricSet>(this.projects().map((p) => [p, new MetricSet()]));
    for (const [i, inst] of running.entries()) {
      try {
        const set = sets.get(inst.project) ?? new MetricSet();
        const src = { project: inst.project, name: inst.name, pid: inst.pid, devices: inst.devices, volumePath: inst.volumePath };
        set.merge(instanceMetrics(layout, host, src, readFile, cgroups[i] ?? ""));
        sets.set(inst.project, set);
      } catch (e) {
        this.core.log.warn({ err: e, instance: inst.name, project: inst.project }, "Failed getting instance metrics");
      }
    }
    const expiry = Date.now() + CACHE_MS;
    for (const [p, set] of sets) this.cache.set(p, { set, expiry });
  }
}

export function metricsRoutes(core: Core, service: MetricsService): Route[] {
  return [
    route(
      "/1.0/metrics",
      {
        GET: async (req, reply) => {
          const open = core.server.get("core.metrics_authentication") === "false";
          const who = req.requestor;
          if (!open && !who.trusted && !who.metrics) throw new Forbidden();
          // A restricted certificate (client or metrics), as LXD's allowProjectPermission: the
          // project asked for ("default" when none) must be one of its own. Without ?project=,
          // LXD would then answer for every project; we answer for the certificate's own only.
          let projects: string[] | undefined = req.query.project ? [req.query.project] : undefined;
          if (!open && who.restricted) {
            if (!(who.projects ?? []).includes(req.query.project || "default")) throw new Forbidden();
            projects ??= who.projects;
          }
          const text = await service.text(projects);
          reply.code(200).header("content-type", "text/plain; charset=utf-8").send(text);
          return handled();
        },
      },
      // As LXD's allowMetrics: anyone reaches the handler, which admits trusted and metrics certificates.
      { GET: "untrusted" },
    ),
  ];
}

export class MetricsFeature implements Feature {
  readonly name = "metrics";
  private readonly service: MetricsService;

  constructor(
    private readonly core: Core,
    instances: Pick<InstancesPort, "running">,
  ) {
    this.service = new MetricsService(core, instances);
  }

  routes(): Route[] {
    return metricsRoutes(this.core, this.service);
  }
}
