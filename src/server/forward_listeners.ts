/**
 * The forwards' listeners, changed all or nothing by a reload. {@linkcode ForwardListeners.prepare}
 * binds every listener the new config needs while the old ones keep serving; only when all are
 * bound can the caller swap its graph and {@linkcode ListenerPlan.commit}, which moves the
 * forwards onto them and lets the listeners no longer needed drain. A bind that fails (port
 * taken) closes what the plan had bound and throws {@linkcode ListenError}: nothing changed.
 *
 * @module
 */
import type { ConnectionGuard } from "./connections.ts";
import type { ForwardConfig } from "../config/schema.ts";
import type { Logger } from "../log.ts";
import { listen, type Listener, type Scheme } from "./listener.ts";

/** Serves one request for the forward now assigned to the listener it arrived on. */
export type ForwardServe = (
  forward: string,
  request: Request,
  peerIp: string,
  scheme: Scheme,
) => Promise<Response> | Response;

/** A listener and the forward it serves (a reload may hand it to another forward). */
interface Slot {
  forward: string;
  readonly listener: Listener;
  /** As configured (port 0: any free port), to tell whether a new config needs the same one. */
  readonly address: string;
  readonly port: number;
  /** The TLS settings it was bound with (JSON), to tell whether a new config needs another. */
  readonly tls: string;
}

/** What {@linkcode ForwardListeners.prepare} bound, to apply once the new graph serves. */
export interface ListenerPlan {
  /** Moves the forwards onto the prepared listeners; the ones left over drain and close. */
  commit(): void;
}

/** A forward whose listener cannot be bound; the message names the forward and the address. */
export class ListenError extends Error {
  override name = "ListenError";
  constructor(readonly forward: string, address: string, cause: unknown) {
    super(`forward "${forward}" cannot listen on ${address}: ${bindFailure(cause)}`, { cause });
  }
}

/** The listeners of every forward, by forward name. */
export class ForwardListeners {
  readonly #serve: ForwardServe;
  readonly #log: Logger;
  readonly #guard: ConnectionGuard;
  readonly #reusePort: boolean;
  readonly #slots = new Map<string, Slot>();
  /** The serving listeners by forward name, kept in step with `#slots`. */
  readonly #byForward = new Map<string, Listener>();
  /** Listeners a reload let go, still finishing their own requests. */
  readonly #draining = new Set<Promise<void>>();

  /**
   * `guard` bounds the connections of every forward's listener together; `reusePort` binds
   * them with `SO_REUSEPORT` (one of several workers).
   */
  constructor(
    serve: ForwardServe,
    options: { log: Logger; guard: ConnectionGuard; reusePort?: boolean },
  ) {
    this.#serve = serve;
    this.#log = options.log;
    this.#guard = options.guard;
    this.#reusePort = options.reusePort ?? false;
  }

  /** The serving listeners by forward name (ports resolved when configured as 0). */
  get byForward(): ReadonlyMap<string, Listener> {
    return this.#byForward;
  }

  /**
   * Binds what `forwards` needs that is not bound yet: a forward keeps its listener while its
   * address and port are unchanged, takes over the listener of a forward this change moves or
   * removes when it wants that exact address and port (a rename, two forwards swapping ports),
   * and gets a new one otherwise. Throws {@linkcode ListenError} when a bind fails, having
   * closed whatever it had bound.
   */
  prepare(forwards: Iterable<ForwardConfig>): ListenerPlan {
    const wanted = new Map([...forwards].map((f) => [f.name, f]));
    const kept = new Set<string>();
    for (const [name, slot] of this.#slots) {
      const f = wanted.get(name);
      if (f && sameSocket(f, slot)) kept.add(name);
    }
    const released = [...this.#slots.values()].filter((s) => !kept.has(s.forward));
    const handovers: [Slot, string][] = [];
    const opened: Slot[] = [];
    try {
      for (const f of wanted.values()) {
        if (kept.has(f.name)) continue;
        // Port 0 means "any": only a fixed port is worth taking over.
        const index = f.port === 0 ? -1 : released.findIndex((s) => sameSocket(f, s));
        if (index >= 0) handovers.push([released.splice(index, 1)[0]!, f.name]);
        else opened.push(this.#bind(f));
      }
    } catch (error) {
      for (const slot of opened) this.#drain(slot);
      throw error;
    }
    return { commit: () => this.#commit(wanted, handovers, opened, released) };
  }

  /** Stops every listener, serving and draining; resolves when all their responses ended. */
  shutdown(): Promise<void> {
    const serving = [...this.#slots.values()].map((s) => s.listener.shutdown());
    return Promise.all([...serving, ...this.#draining]).then(() => {});
  }

  #commit(
    wanted: ReadonlyMap<string, ForwardConfig>,
    handovers: readonly [Slot, string][],
    opened: readonly Slot[],
    released: readonly Slot[],
  ): void {
    for (const slot of [...handovers.map(([s]) => s), ...released]) {
      this.#slots.delete(slot.forward);
    }
    for (const slot of released) {
      // Drains on its own: in-flight requests finish, new connections go to the new listener.
      this.#drain(slot);
      this.#log.info(
        `forward "${slot.forward}" ${wanted.has(slot.forward) ? "moves" : "is removed"}`,
      );
    }
    for (const [slot, forward] of handovers) {
      this.#log.info(
        `forward "${forward}" takes over the listener of forward "${slot.forward}" on ${
          where(slot.listener.hostname, slot.listener.port)
        }`,
      );
      slot.forward = forward;
      this.#slots.set(forward, slot);
    }
    for (const slot of opened) {
      this.#slots.set(slot.forward, slot);
      this.#log.info(
        `forward "${slot.forward}" listening on ${slot.listener.scheme}://${
          where(slot.listener.hostname, slot.listener.port)
        }${slot.listener.scheme === "https" ? " (HTTP/1.1 and HTTP/2)" : ""}`,
        { defaultGroup: wanted.get(slot.forward)?.defaultGroup },
      );
    }
    this.#byForward.clear();
    for (const [name, slot] of this.#slots) {
      this.#byForward.set(name, slot.listener);
      const f = wanted.get(name);
      if (f && tlsKey(f) !== slot.tls) {
        this.#log.warn(
          `forward "${name}": its tls settings changed; the listener on ${
            where(slot.listener.hostname, slot.listener.port)
          } keeps serving ${slot.listener.scheme} with the old ones until a restart`,
        );
      }
    }
  }

  /** Binds `f`'s listener now (`listen` binds synchronously and throws when it cannot). */
  #bind(f: ForwardConfig): Slot {
    const slot = {
      forward: f.name,
      address: f.address,
      port: f.port,
      tls: tlsKey(f),
    } as Slot;
    let listener: Listener;
    try {
      listener = listen(
        f.name,
        {
          hostname: f.address,
          port: f.port,
          guard: this.#guard,
          tls: f.tls,
          reusePort: this.#reusePort,
        },
        // Read at request time: a reload may hand this listener to another forward.
        (request, peerIp, scheme) => this.#serve(slot.forward, request, peerIp, scheme),
        this.#log,
      );
    } catch (error) {
      throw new ListenError(f.name, where(f.address, f.port), error);
    }
    return Object.assign(slot, { listener });
  }

  #drain(slot: Slot): void {
    const drained = slot.listener.shutdown();
    this.#draining.add(drained);
    drained.finally(() => this.#draining.delete(drained)).catch(() => {});
  }
}

/**
 * Whether `f` can be served by the listener of `slot`: same address and port. TLS settings are
 * not compared: a listener with other ones could not be bound while this one holds the port,
 * so a reload keeps it (and its scheme) and says that a restart applies them.
 */
function sameSocket(f: ForwardConfig, slot: Slot): boolean {
  return f.address === slot.address && f.port === slot.port;
}

function tlsKey(f: ForwardConfig): string {
  return f.tls ? JSON.stringify([f.tls.cert, f.tls.key]) : "";
}

function where(hostname: string, port: number): string {
  return `${hostname.includes(":") ? `[${hostname}]` : hostname}:${port}`;
}

/** Why a bind failed, in words (the OS error's text adds nothing the operator can use). */
function bindFailure(error: unknown): string {
  if (error instanceof Deno.errors.AddrInUse) return "the address is already in use";
  if (error instanceof Deno.errors.PermissionDenied) return "permission denied";
  if (error instanceof Deno.errors.AddrNotAvailable) return "the address is not available here";
  return error instanceof Error ? error.message : String(error);
}
