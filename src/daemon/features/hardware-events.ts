// Device hotplug events (LXD's deviceEventListener): kernel uevents handed to the usb and
// unix-hotplug handlers of running instances. With NODELXD_HARDWARE_ROOT=DIR in the daemon's
// environment (tests), hardware is read from DIR/sys, DIR/dev and DIR/proc instead of the
// host's, and uevents come from the unix socket DIR/uevent.sock (the kernel knows nothing of
// that tree's devices).
import { isAbsolute, join } from "node:path";
import type { Core, Feature } from "../feature.js";
import { hotplugHub } from "../../devices/hotplug-hub.js";
import { setHardwareRoots } from "../../devices/sysfs.js";
import { NetlinkUevents, SocketUevents, type UeventSource } from "../../devices/uevents.js";

export class HardwareEventsFeature implements Feature {
  name = "hardware-events";
  private source?: UeventSource;

  constructor(private readonly core: Core) {}

  routes() {
    return [];
  }

  async start(): Promise<void> {
    const log = this.core.log;
    const fake = process.env.NODELXD_HARDWARE_ROOT;
    if (fake && isAbsolute(fake)) {
      setHardwareRoots({ sys: join(fake, "sys"), dev: join(fake, "dev"), proc: join(fake, "proc") });
      log.warn({ root: fake }, "hardware is read from a test tree (NODELXD_HARDWARE_ROOT)");
    }
    hotplugHub.log = log;
    const source = fake && isAbsolute(fake) ? new SocketUevents(join(fake, "uevent.sock")) : new NetlinkUevents(log);
    try {
      await source.start((e) => void hotplugHub.dispatch(e));
      this.source = source;
    } catch (err) {
      log.error({ err }, "scheduler: Couldn't setup netlink listener");
    }
  }

  async stop(): Promise<void> {
    await this.source?.stop();
  }
}
