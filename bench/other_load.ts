/**
 * How much CPU the rest of the machine used while a run went on: all busy time in `/proc/stat`
 * minus that of the harness, its finished children (the load generator) and the servers it
 * started. On a shared or virtual machine a latency figure taken while something else ran is
 * not comparable with one taken in quiet, and nothing else in the report would say so.
 *
 * @module
 */

/** CPU time in clock ticks: the machine's busy total and ours. */
interface Sample {
  atMs: number;
  busy: number;
  ours: number;
}

/** Reads `/proc` through `cat` (Deno grants `/proc` reads only with `--allow-all`). */
async function sample(pids: readonly number[]): Promise<Sample> {
  const files = ["/proc/stat", `/proc/${Deno.pid}/stat`, ...pids.map((p) => `/proc/${p}/stat`)];
  const out = await new Deno.Command("cat", { args: files, stdout: "piped", stderr: "null" })
    .output();
  const lines = new TextDecoder().decode(out.stdout).split("\n");
  // cpu  user nice system idle iowait irq softirq steal …: busy = user+nice+system+irq+softirq.
  const cpu = lines[0]!.trim().split(/\s+/).map(Number);
  const busy = cpu[1]! + cpu[2]! + cpu[3]! + cpu[6]! + cpu[7]!;
  let ours = 0;
  for (const line of lines.slice(1).filter((l) => /^\d+ \(/.test(l))) {
    // After the command name: utime stime cutime cstime are fields 14–17 (11–14 here). The
    // children's times count the load generator once it has exited, and `cat` itself.
    const f = line.slice(line.lastIndexOf(")") + 2).split(" ").map(Number);
    ours += f[11]! + f[12]! + f[13]! + f[14]!;
  }
  return { atMs: performance.now(), busy, ours };
}

/**
 * Starts measuring; `stop()` returns the CPU used by processes other than ours and `pids`
 * (which must stay alive until then), in cores (1 = one CPU busy throughout).
 */
export async function otherLoad(
  pids: readonly number[],
  clockTicks: number,
): Promise<{ stop(): Promise<number> }> {
  const before = await sample(pids);
  return {
    async stop() {
      const after = await sample(pids);
      const others = (after.busy - before.busy) - (after.ours - before.ours);
      return Math.max(0, others / clockTicks) / ((after.atMs - before.atMs) / 1000);
    },
  };
}
