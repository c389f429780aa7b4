/**
 * A real `redis-server` for tests: started on a free loopback port with nothing persisted, and
 * stopped by its PID. Where `redis-server` is not installed (a machine with only Deno), the
 * tests that need it are skipped with a loud line saying so; `.ci/run` installs it.
 *
 * @module
 */

/** The `redis-server` binary, or undefined when none is installed. */
export function redisServerPath(): string | undefined {
  for (const path of ["/usr/bin/redis-server", "/usr/local/bin/redis-server"]) {
    try {
      if (Deno.statSync(path).isFile) return path;
    } catch { /* not there */ }
  }
  return undefined;
}

const SKIP_LINE =
  "******** SKIPPED: redis-server is not installed (apt-get install redis-server): the Redis store is NOT verified ********";

/** Whether Redis tests can run; prints the skip line once when they cannot. */
export function redisAvailable(): boolean {
  const available = redisServerPath() !== undefined;
  if (!available && !skipped) {
    skipped = true;
    console.log(SKIP_LINE);
  }
  return available;
}
let skipped = false;

/** A running `redis-server`. */
export interface RedisServer {
  readonly port: number;
  readonly url: string;
  /** Its process id while it runs (for CPU figures). */
  pid(): number | undefined;
  /** Stops it (SIGTERM to its PID) and waits for it to exit. */
  stop(): Promise<void>;
  /** Starts it again on the same port (empty: nothing is persisted). */
  restart(): Promise<void>;
  /**
   * Freezes it (SIGSTOP) or lets it run again (SIGCONT): a server that keeps its connections
   * open and stops answering.
   */
  freeze(frozen: boolean): void;
}

/** A free loopback port (bound and released). */
function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  return port;
}

/** Starts `redis-server` on a free port and waits until it answers. */
export async function startRedisServer(): Promise<RedisServer> {
  const binary = redisServerPath();
  if (!binary) throw new Error("redis-server is not installed");
  const port = freePort();
  let child: Deno.ChildProcess | undefined;
  const start = async () => {
    child = new Deno.Command(binary, {
      args: [
        "--port",
        String(port),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        "--daemonize",
        "no",
      ],
      stdout: "null",
      stderr: "null",
      stdin: "null",
    }).spawn();
    await waitUntilAnswers(port);
  };
  const stop = async () => {
    if (!child) return;
    const running = child;
    child = undefined;
    try {
      Deno.kill(running.pid, "SIGCONT");
      Deno.kill(running.pid, "SIGTERM");
    } catch { /* already gone */ }
    await running.status;
  };
  const freeze = (frozen: boolean) => {
    if (child) Deno.kill(child.pid, frozen ? "SIGSTOP" : "SIGCONT");
  };
  await start();
  return {
    port,
    url: `redis://127.0.0.1:${port}/0`,
    pid: () => child?.pid,
    stop,
    restart: start,
    freeze,
  };
}

/** Waits (up to 5 s) until a PING on `port` gets PONG. */
async function waitUntilAnswers(port: number): Promise<void> {
  const deadline = Date.now() + 5_000;
  while (Date.now() < deadline) {
    try {
      const conn = await Deno.connect({ hostname: "127.0.0.1", port });
      try {
        await conn.write(new TextEncoder().encode("PING\r\n"));
        const buffer = new Uint8Array(16);
        const n = await conn.read(buffer);
        if (n && new TextDecoder().decode(buffer.subarray(0, n)).startsWith("+PONG")) return;
      } finally {
        conn.close();
      }
    } catch { /* not listening yet */ }
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  throw new Error(`redis-server on port ${port} did not answer within 5 s`);
}

/**
 * Sends one inline command (`SET k v`, `INFO commandstats`) on a new connection and returns the
 * reply's text: a simple reply's line (`+OK`), an integer reply's digits, or a bulk reply's
 * content.
 */
export async function redisCommand(port: number, command: string): Promise<string> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  try {
    await conn.write(new TextEncoder().encode(`${command}\r\n`));
    const buffer = new Uint8Array(65_536);
    let text = "";
    for (;;) {
      const n = await conn.read(buffer);
      if (n === null) throw new Error(`redis closed the connection after ${text.length} bytes`);
      text += new TextDecoder().decode(buffer.subarray(0, n));
      const bulk = /^\$(-?\d+)\r\n/.exec(text);
      if (bulk) {
        const length = Number(bulk[1]);
        if (length < 0) return "";
        if (text.length >= bulk[0].length + length + 2) {
          return text.slice(bulk[0].length, bulk[0].length + length);
        }
      } else if (!text.startsWith("$") && text.endsWith("\r\n")) {
        return text.startsWith(":") ? text.slice(1, -2) : text.slice(0, -2);
      }
    }
  } finally {
    conn.close();
  }
}

/** Script runs (EVAL and EVALSHA) the server has answered since it started. */
export async function redisScriptRuns(port: number): Promise<number> {
  const stats = await redisCommand(port, "INFO commandstats");
  let runs = 0;
  for (const m of stats.matchAll(/^cmdstat_eval(?:sha)?:calls=(\d+)/gm)) runs += Number(m[1]);
  return runs;
}
