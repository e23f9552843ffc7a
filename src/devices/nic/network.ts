// network=NAME: a NIC on a managed network, bridged or macvlan by the network's type.
import type { Device, DeviceConfig, DeviceContext } from "../types.js";
import { BridgedNic } from "./bridged.js";
import { MacvlanNic } from "./macvlan.js";

export function networkNic(ctx: DeviceContext, name: string, config: DeviceConfig): Device {
  const nets = ctx.ports.networks;
  let type: string;
  try {
    type = nets.get(ctx.project, config.network).type;
  } catch (e) {
    const project = nets.projectOf(ctx.project);
    throw new Error(`Failed loading device "${name}": Failed to load network "${config.network}" for project "${project}": ${(e as Error).message}`);
  }
  if (type === "bridge") return new BridgedNic(ctx, name, config, config.network);
  if (type === "macvlan") return new MacvlanNic(ctx, name, config, config.network);
  throw new Error(`Unsupported network type "${type}" for NIC "${name}"`);
}
