import { z } from "zod";

const config = z.record(z.string()).nullable().optional();

/** api.NetworkZonePut */
export const NetworkZonePut = z.object({ description: z.string().optional(), config }).strip();
/** api.NetworkZonesPost */
export const NetworkZonesPost = NetworkZonePut.extend({ name: z.string().default("") });

/** api.NetworkZoneRecordEntry */
const Entry = z.object({ type: z.string().default(""), ttl: z.number().int().nonnegative().optional(), value: z.string().default("") }).strip();
/** api.NetworkZoneRecordPut */
export const NetworkZoneRecordPut = z.object({ description: z.string().optional(), entries: z.array(Entry).nullable().optional(), config }).strip();
/** api.NetworkZoneRecordsPost */
export const NetworkZoneRecordsPost = NetworkZoneRecordPut.extend({ name: z.string().default("") });
