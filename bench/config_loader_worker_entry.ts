/**
 * The Worker side of `config_loader_worker.ts`: loads the config it is sent and posts back what
 * the child process would print (the same JSON), so the parent rebuilds it the same way.
 *
 * @module
 */
import { childOutput } from "../src/config/isolated.ts";
import type { WorkerRequest } from "./config_loader_worker.ts";

// Typed by hand: this file is checked with the window globals of the rest of bench/.
const scope = globalThis as unknown as {
  onmessage: (event: MessageEvent<WorkerRequest>) => void;
  postMessage(message: string): void;
};

scope.onmessage = async (event) => {
  scope.postMessage(await childOutput(event.data.source, event.data.program));
};
