/**
 * `GET /v1/models` answered from the config: when any group declares `models`, the proxy
 * knows which models it serves, so it lists them itself (OpenAI list format) instead of
 * passing the question to whichever upstream the default group picks, whose list would name
 * models the proxy does not route and miss the ones other groups serve.
 *
 * - `GET|HEAD /v1/models` → `{"object": "list", "data": [<model>…]}`;
 * - `GET|HEAD /v1/models/{id}` → `<model>`, or 404 `model_not_found` when `id` is not listed
 *   for the caller (an OpenAI client's `models.retrieve()`);
 * - a model is `{"id", "object": "model", "created": 0, "owned_by": "llmproxy"}`: the proxy
 *   knows no creation time (0 says so, and keeps the answer the same across reloads) and owns
 *   the name as clients see it (an upstream's `modelMap` may serve it under another one).
 *
 * Only exact names are listed (a glob names no model), deduplicated, in config order. A client
 * key sees a model when it may reach the group model routing sends that name to (the first
 * group that lists it: exact names win, ties go to the first declared) and its `models` allow
 * the name: what the key could really ask for.
 *
 * The path is matched exactly (after the validate stage made it canonical): OpenAI clients
 * call `<baseURL>/models` with a base URL ending in `/v1`. Other methods, and other paths,
 * go on to the proxy as before.
 *
 * @module
 */
import { type RequestContext, type Stage, syncStage } from "./compose.ts";
import { NotFoundError } from "./errors.ts";
import type { ClientKey } from "../keys/client_key.ts";
import { isGlob } from "../routing/glob.ts";

const LIST_PATH = "/v1/models";

/** A listed model and the group model routing sends it to. */
interface Listed {
  readonly id: string;
  readonly group: string;
}

/** What one caller sees: the ids it may use and the list rendered for it. */
export interface ModelView {
  readonly ids: ReadonlySet<string>;
  readonly list: Uint8Array<ArrayBuffer>;
}

const encoder = new TextEncoder();

/** The models of one config, with each caller's view rendered once. */
export class ModelCatalog {
  readonly #models: readonly Listed[];
  /**
   * Views per client key (undefined: a forward without keys). Bounded: a graph's keys are the
   * ones its config names, and a reload builds a new catalog.
   */
  readonly #views = new Map<ClientKey | undefined, ModelView>();

  /** A catalog of the groups' `models`, or undefined when no group declares any. */
  static fromGroups(
    groups: readonly { readonly name: string; readonly models?: readonly string[] | undefined }[],
  ): ModelCatalog | undefined {
    if (!groups.some((g) => g.models !== undefined)) return undefined;
    const models: Listed[] = [];
    const seen = new Set<string>();
    for (const group of groups) {
      for (const pattern of group.models ?? []) {
        if (isGlob(pattern) || seen.has(pattern)) continue;
        seen.add(pattern);
        models.push({ id: pattern, group: group.name });
      }
    }
    return new ModelCatalog(models);
  }

  private constructor(models: readonly Listed[]) {
    this.#models = models;
  }

  /** What `key` (undefined: no key) sees. */
  view(key: ClientKey | undefined): ModelView {
    let view = this.#views.get(key);
    if (!view) {
      const ids = this.#models.filter((m) => !key || key.allows(m.group, m.id)).map((m) => m.id);
      view = {
        ids: new Set(ids),
        list: encoder.encode(JSON.stringify({ object: "list", data: ids.map(modelObject) })),
      };
      this.#views.set(key, view);
    }
    return view;
  }
}

/** Creates the stage that answers `GET /v1/models` from `catalog`. */
export function modelsEndpointStage(catalog: ModelCatalog): Stage {
  // A refusal reaches the caller as a rejected promise (syncStage), never a synchronous throw.
  return syncStage(function modelsEndpoint(ctx, next) {
    const method = ctx.request.method;
    const path = ctx.path;
    if ((method !== "GET" && method !== "HEAD") || !path.startsWith(LIST_PATH)) return next();
    if (path.length === LIST_PATH.length) {
      return Promise.resolve(answer(ctx, catalog.view(ctx.clientKey).list));
    }
    if (path[LIST_PATH.length] !== "/") return next();
    const id = decode(path.slice(LIST_PATH.length + 1));
    if (id === undefined || !catalog.view(ctx.clientKey).ids.has(id)) {
      // The id is the client's own text: quoted as JSON, never interpreted.
      const shown = JSON.stringify((id ?? path.slice(LIST_PATH.length + 1)).slice(0, 200));
      throw new NotFoundError(`the model ${shown} does not exist or you do not have access to it`, {
        code: "model_not_found",
      });
    }
    return Promise.resolve(answer(ctx, encoder.encode(JSON.stringify(modelObject(id)))));
  });
}

function modelObject(id: string) {
  return { id, object: "model", created: 0, owned_by: "llmproxy" };
}

/**
 * The id in a canonical path: its percent-encoding undone (a name with non-ASCII characters
 * arrives encoded; `/` in a name such as `Qwen/Qwen2.5-72B` arrives as itself, since the
 * validate stage decodes `%2F`). Undefined when it is not valid percent-encoded UTF-8.
 */
function decode(segment: string): string | undefined {
  try {
    return decodeURIComponent(segment);
  } catch {
    return undefined;
  }
}

/** A 200 JSON answer with the request's response headers; HEAD gets the headers only. */
function answer(ctx: RequestContext, body: Uint8Array<ArrayBuffer>): Response {
  const headers = new Headers(ctx.responseHeaders);
  headers.set("content-type", "application/json");
  const head = ctx.request.method === "HEAD";
  if (head) headers.set("content-length", String(body.byteLength));
  ctx.trace.bodyBytes = head ? 0 : body.byteLength;
  return new Response(head ? null : body, { headers });
}
