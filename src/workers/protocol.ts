/**
 * Messages between the main thread (the supervisor) and its serving workers. Everything is
 * plain, structured-clonable data: configs, tables of shared memory, rendered metrics.
 *
 * @module
 */
import type { LoadedConfig } from "../config/errors.ts";
import type { LogLevel } from "../log.ts";
import type { SharedLimitsData } from "../state/shared_limits.ts";
import type { TransportChoice } from "../transport/select.ts";

/** What a worker starts with (the first message it gets). */
export interface WorkerInit {
  readonly type: "init";
  /** 1-based; a replacement takes the id of the worker it replaces. */
  readonly id: number;
  /** Workers in all. */
  readonly workers: number;
  /** The config to serve, with every forward's port resolved (never 0). */
  readonly loaded: LoadedConfig;
  readonly limits: SharedLimitsData;
  /** The main thread's `performance.timeOrigin`: every worker's clock counts from it. */
  readonly timeOrigin: number;
  /** Log to stderr with these settings; omitted = send records to the main thread's logger. */
  readonly log?: { readonly level: LogLevel; readonly json: boolean };
  readonly transport?: TransportChoice;
  /** Tests only: a `crash` message makes the worker throw. */
  readonly allowCrash?: boolean;
}

/** What the main thread asks a worker; each but `crash` is answered with a {@linkcode WorkerAnswer}. */
export type ToWorker =
  | WorkerInit
  | { readonly type: "reload"; readonly seq: number; readonly loaded: LoadedConfig }
  | { readonly type: "query"; readonly seq: number; readonly what: QueryKind }
  | { readonly type: "stop"; readonly seq: number }
  | { readonly type: "crash" };

/** The state the admin API gathers from every worker. */
export type QueryKind = "metrics" | "keys" | "upstreams" | "ready" | "store";

/** A log record from a worker without its own stderr logger. */
export interface LogRecord {
  readonly level: LogLevel;
  readonly message: string;
  readonly fields?: Readonly<Record<string, unknown>>;
}

/** What a worker tells the main thread. */
export type FromWorker =
  | { readonly type: "started"; readonly ok: true }
  | { readonly type: "started"; readonly ok: false; readonly error: string }
  | { readonly type: "answer"; readonly seq: number; readonly value: unknown }
  | { readonly type: "log"; readonly records: readonly LogRecord[] };
