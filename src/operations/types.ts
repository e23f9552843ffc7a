// Operation and event shapes as LXD 5.0.2 serialises them.
export const OperationStatus = {
  Pending: 105,
  Running: 103,
  Cancelling: 104,
  Success: 200,
  Failure: 400,
  Cancelled: 401,
} as const;
export type OperationStatusName = keyof typeof OperationStatus;
export type OperationClass = "task" | "websocket" | "token";

export interface OperationView {
  id: string;
  class: OperationClass;
  description: string;
  created_at: string;
  updated_at: string;
  status: OperationStatusName;
  status_code: number;
  resources: Record<string, string[]> | null;
  metadata: Record<string, unknown> | null;
  may_cancel: boolean;
  err: string;
  location: string;
}

export type EventType = "lifecycle" | "logging" | "operation";

export interface EventRequestor {
  username: string;
  protocol: string;
  address: string;
}

export interface LxdEvent {
  type: EventType;
  timestamp: string;
  metadata: unknown;
  location: string;
  project?: string;
}
