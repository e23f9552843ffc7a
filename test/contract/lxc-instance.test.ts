import { instanceDrivers } from "../../src/instances/drivers/index.js";
import { testInstanceDriver } from "./instance-driver.js";

testInstanceDriver({ definition: instanceDrivers.lxc });
