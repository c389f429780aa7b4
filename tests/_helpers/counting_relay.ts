/**
 * A TCP relay that counts the connections it accepts and pipes each one to a target port:
 * put in front of an upstream, it shows how many connections the proxy dialled.
 *
 * @module
 */

/** A running relay. */
export interface CountingRelay {
  /** `http://127.0.0.1:PORT` of the relay. */
  readonly url: string;
  /** Connections accepted so far. */
  readonly accepted: number;
  close(): Promise<void>;
}

/** Starts a relay on a free port towards `127.0.0.1:targetPort`. */
export function startCountingRelay(targetPort: number): CountingRelay {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const open = new Set<Deno.Conn>();
  const pipes: Promise<unknown>[] = [];
  let accepted = 0;
  const accepting = (async () => {
    for await (const client of listener) {
      accepted++;
      open.add(client);
      pipes.push(relay(client));
    }
  })().catch(() => {/* listener closed */});

  async function relay(client: Deno.Conn): Promise<void> {
    let server: Deno.Conn | undefined;
    try {
      server = await Deno.connect({ hostname: "127.0.0.1", port: targetPort });
      open.add(server);
      // Either side ending ends both: the relay keeps no half-open connections.
      await Promise.race([
        client.readable.pipeTo(server.writable, { preventClose: true }),
        server.readable.pipeTo(client.writable, { preventClose: true }),
      ]);
    } catch {
      // A side reset or closed: close both below.
    } finally {
      for (const conn of [client, server]) {
        if (!conn) continue;
        open.delete(conn);
        try {
          conn.close();
        } catch { /* already closed */ }
      }
    }
  }

  return {
    url: `http://127.0.0.1:${(listener.addr as Deno.NetAddr).port}`,
    get accepted() {
      return accepted;
    },
    async close() {
      listener.close();
      for (const conn of open) {
        try {
          conn.close();
        } catch { /* already closed */ }
      }
      await accepting;
      await Promise.allSettled(pipes);
    },
  };
}
