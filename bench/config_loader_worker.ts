/**
 * The Worker prototype measured by `config_loader_rss.ts`: `src/config/isolated.ts` with
 * {@linkcode loadConfig} loading the config in a module Worker that is terminated once it
 * answered. The benchmark swaps it in for the proxy with an import map; the proxy itself never
 * imports it (it measured about 23 MiB more resident than the child process: see
 * `src/config/isolated.ts`).
 *
 * @module
 */
import {
  type ConfigSource,
  fromChildOutput,
  type LoadResult,
  type ProgramFacts,
} from "../src/config/isolated.ts";
import type { EnvLookup, LoadedConfig } from "../src/config/errors.ts";

export * from "../src/config/isolated.ts";

/** What the Worker is asked: as the child's request, plus the facts a Worker cannot import. */
export interface WorkerRequest {
  readonly source: ConfigSource;
  readonly program: ProgramFacts;
}

/** Loads the config in a Worker (it reads the real environment, as the child does). */
export async function loadConfig(
  source: ConfigSource,
  _env: EnvLookup,
  program: ProgramFacts,
): Promise<LoadResult> {
  return { loaded: await runWorker({ source, program }), isolated: true };
}

function runWorker(request: WorkerRequest): Promise<LoadedConfig> {
  const worker = new Worker(new URL("./config_loader_worker_entry.ts", import.meta.url), {
    type: "module",
  });
  return new Promise<LoadedConfig>((resolve, reject) => {
    worker.onmessage = (event: MessageEvent<string>) => {
      worker.terminate();
      try {
        resolve(fromChildOutput(event.data, request.program.version));
      } catch (error) {
        reject(error);
      }
    };
    worker.onerror = (event) => {
      event.preventDefault();
      worker.terminate();
      reject(new Error(`the config loader worker failed: ${event.message}`));
    };
    worker.postMessage(request);
  });
}
