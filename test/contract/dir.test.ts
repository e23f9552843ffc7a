import { dirDriver } from "../../src/storage/drivers/dir.js";
import { testDriver } from "./storage-driver.js";

testDriver({ definition: dirDriver });
