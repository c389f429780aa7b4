/**
 * The module a serving worker starts from when the app is used as a library (tests); main.ts
 * passes its own URL instead (see `AppOptions.workerModule`).
 *
 * @module
 */
import { runWorker } from "./worker.ts";

runWorker();
