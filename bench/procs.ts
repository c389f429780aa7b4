/**
 * Process control for the benchmark: free ports, spawning with output to a file and optional
 * CPU pinning, readiness by TCP connect, CPU time and RSS from `/proc`, and a registry that
 * kills every spawned process on exit.
 *
 * @module
 */

/** A spawned child whose stdout and stderr go to `logFile`. */
export interface Proc {
  readonly name: string;
  readonly pid: number;
  readonly logFile: string;
  readonly status: Promise<Deno.CommandStatus>;
  /** SIGTERM, then SIGKILL after `graceMs`; resolves once the process has exited. */
  stop(graceMs?: number): Promise<void>;
}

/** Options of {@linkcode spawn}. */
export interface SpawnOptions {
  /** File receiving stdout and stderr (the proxy's access log goes to stderr). */
  logFile: string;
  /** CPU core to pin to with `taskset -c`; undefined = no pinning. */
  cpu?: number;
  cwd?: string;
  /** Added to the inherited environment (e.g. `DENO_CERT` for an https upstream). */
  env?: Record<string, string>;
}

const running = new Set<Proc>();

/** Aborted by {@linkcode stopAll}: short-lived commands (load generators) pass it as `signal`. */
export const shutdown: AbortController = new AbortController();

/**
 * Starts `cmd args…` through `sh -c 'exec …'`, so output is redirected to a file without a
 * pipe to drain and the returned PID is the program itself (exec keeps the PID, also
 * through `taskset`).
 */
export function spawn(name: string, cmd: string[], options: SpawnOptions): Proc {
  const pin = options.cpu === undefined ? "" : `taskset -c ${options.cpu} `;
  const script = `exec ${pin}"$@" >"$BENCH_LOG" 2>&1`;
  const child = new Deno.Command("sh", {
    args: ["-c", script, "sh", ...cmd],
    env: {
      ...options.env,
      BENCH_LOG: options.logFile,
      NO_COLOR: "1",
      DENO_NO_UPDATE_CHECK: "1",
    },
    cwd: options.cwd,
    stdin: "null",
    stdout: "null",
    stderr: "null",
  }).spawn();
  let exited = false;
  const status = child.status.finally(() => {
    exited = true;
  });
  const proc: Proc = {
    name,
    pid: child.pid,
    logFile: options.logFile,
    status,
    async stop(graceMs = 3000) {
      running.delete(proc);
      if (exited) return;
      trySignal(child, "SIGTERM");
      const timer = setTimeout(() => trySignal(child, "SIGKILL"), graceMs);
      await status;
      clearTimeout(timer);
    },
  };
  running.add(proc);
  return proc;
}

function trySignal(child: Deno.ChildProcess, signal: Deno.Signal): void {
  try {
    child.kill(signal);
  } catch {
    // Already gone.
  }
}

/** Stops every process {@linkcode spawn} started and has not stopped yet. */
export async function stopAll(): Promise<void> {
  shutdown.abort();
  await Promise.all([...running].map((p) => p.stop(1000)));
}

/** A port that was free a moment ago: bind port 0, read it, close. */
export function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  return port;
}

/** Resolves once `port` accepts a TCP connection; throws after `timeoutMs` or if `proc` exits. */
export async function waitForPort(port: number, proc: Proc, timeoutMs = 20_000): Promise<void> {
  let exited = false;
  proc.status.then(() => exited = true);
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline && !exited) {
    try {
      const conn = await Deno.connect({ hostname: "127.0.0.1", port });
      conn.close();
      return;
    } catch {
      await sleep(50);
    }
  }
  const log = await Deno.readTextFile(proc.logFile).catch(() => "");
  throw new Error(
    `${proc.name} (pid ${proc.pid}) did not listen on port ${port} within ${timeoutMs} ms${
      exited ? " (it exited)" : ""
    }; log tail:\n${log.slice(-2000)}`,
  );
}

/** Sleeps `ms` milliseconds. */
export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Clock ticks per second of `/proc/<pid>/stat` times (`getconf CLK_TCK`, normally 100). */
export async function clockTicks(): Promise<number> {
  try {
    const out = await new Deno.Command("getconf", { args: ["CLK_TCK"] }).output();
    const n = Number(new TextDecoder().decode(out.stdout).trim());
    return Number.isFinite(n) && n > 0 ? n : 100;
  } catch {
    return 100;
  }
}

/** CPU time and memory of a process. */
export interface ProcInfo {
  /** utime + stime in clock ticks (fields 14 and 15 of `/proc/<pid>/stat`); NaN if gone. */
  ticks: number;
  /** Resident set size (`VmRSS` of `/proc/<pid>/status`), MiB; NaN if gone. */
  rssMiB: number;
}

/**
 * Reads `/proc/<pid>/stat` and `/proc/<pid>/status` through `cat`: Deno grants `/proc` reads
 * only with `--allow-all`, while the bench task has `--allow-run`.
 */
/**
 * This process's CPU time so far (utime + stime), µs; 100 ticks a second, as on Linux here.
 * Read at once, for loops measured in process.
 */
export function ownCpuMicros(): number {
  const fields = Deno.readTextFileSync("/proc/self/stat").split(") ")[1]!.split(" ");
  return (Number(fields[11]) + Number(fields[12])) * 10_000;
}

export async function procInfo(pid: number): Promise<ProcInfo> {
  const out = await new Deno.Command("cat", {
    args: [`/proc/${pid}/stat`, `/proc/${pid}/status`],
    stdout: "piped",
    stderr: "null",
  }).output();
  const text = new TextDecoder().decode(out.stdout);
  // The command name (field 2) may contain spaces; the fields after it follow the last ')'.
  const statLine = text.slice(0, text.indexOf("\n"));
  const fields = statLine.slice(statLine.lastIndexOf(")") + 2).split(" ");
  const kib = Number(/^VmRSS:\s+(\d+) kB/m.exec(text)?.[1]);
  return {
    ticks: out.success ? Number(fields[11]) + Number(fields[12]) : NaN,
    rssMiB: kib / 1024,
  };
}

/** The machine's CPU time so far (the `cpu` line of `/proc/stat`), in clock ticks. */
export interface MachineTicks {
  total: number;
  idle: number;
}

/** Reads {@linkcode MachineTicks} (through `cat`, as {@linkcode procInfo}); NaN if unreadable. */
export async function machineTicks(): Promise<MachineTicks> {
  const out = await new Deno.Command("cat", {
    args: ["/proc/stat"],
    stdout: "piped",
    stderr: "null",
  })
    .output();
  return parseProcStat(new TextDecoder().decode(out.stdout));
}

/**
 * {@linkcode MachineTicks} from the text of `/proc/stat`: its first line is `cpu user nice
 * system idle iowait irq softirq steal guest guest_nice`; guest time is already in user and nice,
 * and iowait counts as idle. NaN when the line is missing.
 */
export function parseProcStat(text: string): MachineTicks {
  const line = text.slice(0, text.indexOf("\n") < 0 ? text.length : text.indexOf("\n"));
  const n = line.trim().split(/\s+/).slice(1, 9).map(Number);
  if (!line.startsWith("cpu ") || n.length < 8 || n.some((x) => !Number.isFinite(x))) {
    return { total: NaN, idle: NaN };
  }
  return { total: n.reduce((a, b) => a + b, 0), idle: n[3]! + n[4]! };
}

/** Samples RSS of `pid` every `intervalMs` until stopped; `stop()` resolves to the peak, MiB. */
export function rssSampler(pid: number, intervalMs = 250): { stop(): Promise<number> } {
  let peak = NaN;
  let stopped = false;
  const loop = (async () => {
    while (!stopped) {
      const { rssMiB } = await procInfo(pid);
      if (rssMiB > peak || Number.isNaN(peak)) peak = rssMiB;
      if (!stopped) await sleep(intervalMs);
    }
  })();
  return {
    async stop() {
      stopped = true;
      await loop;
      const { rssMiB } = await procInfo(pid);
      return rssMiB > peak || Number.isNaN(peak) ? rssMiB : peak;
    },
  };
}

/** Whether `name` is an executable on PATH. */
export async function hasCommand(name: string): Promise<boolean> {
  try {
    const out = await new Deno.Command("sh", { args: ["-c", `command -v ${name}`] }).output();
    return out.success;
  } catch {
    return false;
  }
}
