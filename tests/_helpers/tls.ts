/**
 * TLS fixtures for tests (`tests/_fixtures/tls/`, made once by its `make.sh`): a private CA and
 * certificates it signed, and a TCP relay that counts the connections (TLS handshakes) an
 * upstream behind it receives.
 *
 * @module
 */

/** The fixture directory (absolute). */
export const TLS_DIR = new URL("../_fixtures/tls/", import.meta.url).pathname;

/** A fixture's PEM text, e.g. `pem("ca.pem")`. */
export function pem(name: string): string {
  return Deno.readTextFileSync(TLS_DIR + name);
}

/** A fixture's absolute path. */
export function fixturePath(name: string): string {
  return TLS_DIR + name;
}

/** Certificate and key of a fixture pair: `server`, `wrong_name`, `expired`, `client`. */
export function certified(name: string): { cert: string; key: string } {
  return { cert: pem(`${name}.pem`), key: pem(`${name}.key`) };
}

/** A relay in front of a TCP port that counts the connections made through it. */
export interface CountingRelay {
  readonly port: number;
  /** Connections accepted so far. */
  readonly connections: number;
  close(): Promise<void>;
}

/** Relays every connection on a new port (127.0.0.1) to `targetPort`, counting them. */
export function countingRelay(targetPort: number): CountingRelay {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  let connections = 0;
  const open = new Set<Deno.Conn>();
  const pipes = new Set<Promise<unknown>>();
  const close = (conn: Deno.Conn) => {
    open.delete(conn);
    try {
      conn.close();
    } catch { /* closed */ }
  };
  const loop = (async () => {
    for await (const inbound of listener) {
      connections++;
      open.add(inbound);
      const pipe = (async () => {
        let outbound: Deno.Conn;
        try {
          outbound = await Deno.connect({ hostname: "127.0.0.1", port: targetPort });
        } catch {
          return close(inbound);
        }
        open.add(outbound);
        const end = () => {
          close(inbound);
          close(outbound);
        };
        await Promise.all([
          inbound.readable.pipeTo(outbound.writable, { preventClose: true }).catch(() => {}),
          outbound.readable.pipeTo(inbound.writable, { preventClose: true }).catch(() => {}),
        ].map((p) => p.finally(end)));
      })();
      pipes.add(pipe);
      pipe.finally(() => pipes.delete(pipe));
    }
  })().catch(() => {});
  return {
    port: (listener.addr as Deno.NetAddr).port,
    get connections() {
      return connections;
    },
    async close() {
      listener.close();
      for (const conn of [...open]) close(conn);
      await loop;
      await Promise.allSettled([...pipes]);
    },
  };
}
