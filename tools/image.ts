/**
 * `deno task image`: builds the container image `llmproxy:latest` from nothing but this
 * machine's files. No base image is pulled: the build context's `rootfs/` is assembled here and
 * the `Containerfile` copies it into an image `FROM scratch`.
 *
 * The runtime: the executable `deno compile` makes, when it works (it downloads Deno's `denort`
 * runtime, or uses `DENORT_BIN`); else this Deno's own executable running `dist/llmproxy.js`.
 * Either way the ELF file is copied with the shared libraries `ldd` lists for it (glibc), so
 * the image runs what runs here. Also in it: Debian's CA bundle, `/etc/passwd` and `/etc/group`
 * naming the user 65532, `/etc/nsswitch.conf`, and the empty `/config` and `/tmp`.
 *
 * Usage: deno task image [--runtime auto|binary|bundle] [--tag NAME] [--engine podman|docker]
 *                        [--context DIR] [--no-build]
 *
 * `--no-build` prepares the context only (`dist/image` by default). Prints the runtime chosen,
 * the image's size and the time taken.
 *
 * @module
 */

/** Options of {@linkcode buildImage}. */
export interface ImageOptions {
  /** `auto`: the compiled binary when `deno compile` works, else Deno + the bundle. */
  runtime: "auto" | "binary" | "bundle";
  /** @default "llmproxy:latest" */
  tag: string;
  /** The container engine; undefined = podman when installed, else docker. */
  engine?: string | undefined;
  /** Where the build context is prepared. @default "dist/image" */
  context: string;
  /** Prepare the context, do not build. */
  build: boolean;
}

const ROOT = decodeURIComponent(new URL("../", import.meta.url).pathname).replace(/\/$/, "");
const CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt";
/** The image's user and group: not root, and the uid distroless images use. */
const UID = 65532;

function parseArgs(args: readonly string[]): ImageOptions {
  const options: ImageOptions = {
    runtime: "auto",
    tag: "llmproxy:latest",
    context: `${ROOT}/dist/image`,
    build: true,
  };
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    const value = () => {
      const v = args[++i];
      if (v === undefined) throw new Error(`${arg} needs a value`);
      return v;
    };
    if (arg === "--runtime") {
      const v = value();
      if (v !== "auto" && v !== "binary" && v !== "bundle") {
        throw new Error(`--runtime ${v}: use auto, binary or bundle`);
      }
      options.runtime = v;
    } else if (arg === "--tag") options.tag = value();
    else if (arg === "--engine") options.engine = value();
    else if (arg === "--context") options.context = value();
    else if (arg === "--no-build") options.build = false;
    else throw new Error(`unknown argument ${arg}`);
  }
  return options;
}

async function run(
  command: string,
  args: readonly string[],
  options: { quiet?: boolean } = {},
): Promise<{ ok: boolean; output: string }> {
  const child = await new Deno.Command(command, {
    args: [...args],
    cwd: ROOT,
    env: { NO_COLOR: "1" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const output = new TextDecoder().decode(child.stdout) + new TextDecoder().decode(child.stderr);
  if (!options.quiet && !child.success) console.error(output.trimEnd());
  return { ok: child.success, output };
}

function exists(path: string): boolean {
  try {
    Deno.statSync(path);
    return true;
  } catch {
    return false;
  }
}

/** Whether `command` is an executable on PATH. */
function onPath(command: string): boolean {
  return (Deno.env.get("PATH") ?? "").split(":").some((dir) => {
    try {
      const info = Deno.statSync(`${dir}/${command}`);
      return info.isFile && ((info.mode ?? 0) & 0o111) !== 0;
    } catch {
      return false;
    }
  });
}

/** The files `ldd` lists for `elf` (resolved paths, the dynamic loader included). */
export function parseLdd(output: string): string[] {
  const files: string[] = [];
  for (const line of output.split("\n")) {
    const match = line.match(/=>\s*(\/\S+)/) ?? line.match(/^\s*(\/\S+)/);
    if (match) files.push(match[1]!);
    else if (/=>\s*not found/.test(line)) throw new Error(`ldd: ${line.trim()}`);
  }
  return files;
}

/** Copies `from` (symlinks followed) to the same path under `rootfs`, keeping its mode. */
async function copyInto(rootfs: string, from: string, to = from): Promise<void> {
  const target = `${rootfs}${to}`;
  await Deno.mkdir(target.slice(0, target.lastIndexOf("/")), { recursive: true });
  await Deno.copyFile(from, target);
  await Deno.chmod(target, (await Deno.stat(from)).mode! & 0o777);
}

async function du(path: string): Promise<number> {
  let total = 0;
  for await (const entry of Deno.readDir(path)) {
    const child = `${path}/${entry.name}`;
    if (entry.isDirectory) total += await du(child);
    else if (entry.isFile) total += (await Deno.stat(child)).size;
  }
  return total;
}

/** Bundles, compiles when asked and possible, and fills the build context. Returns the runtime. */
export async function prepareContext(options: ImageOptions): Promise<"binary" | "bundle"> {
  const deno = Deno.execPath();
  if (!(await run(deno, ["bundle", "--output", "dist/llmproxy.js", "main.ts"])).ok) {
    throw new Error("deno bundle failed");
  }
  let runtime: "binary" | "bundle" = "bundle";
  if (options.runtime !== "bundle") {
    const compiled = await run(deno, [
      "compile",
      "--allow-net",
      "--allow-read",
      "--allow-env",
      "--allow-run",
      "--output",
      "dist/llmproxy",
      "main.ts",
    ], { quiet: options.runtime === "auto" });
    if (compiled.ok) runtime = "binary";
    else if (options.runtime === "binary") throw new Error("deno compile failed");
    else {
      const lines = compiled.output.split("\n").map((l) => l.trim());
      // The cause ("error sending request for url (…denort…)"), else the first error line.
      const reason = (lines.find((l) =>
        /error sending request|denort/.test(l) && !/^Download/.test(l)
      ) ??
        lines.find((l) => /error/i.test(l)) ?? "").replace(/^\d+: /, "");
      console.log(`image: deno compile does not work here (${reason.slice(0, 160)})`);
    }
  }
  const elf = runtime === "binary" ? `${ROOT}/dist/llmproxy` : await Deno.realPath(deno);
  console.log(
    runtime === "binary"
      ? "image: runtime = the compiled binary (dist/llmproxy)"
      : `image: runtime = Deno ${Deno.version.deno} (${elf}) running dist/llmproxy.js`,
  );
  const magic = (await Deno.readFile(elf)).subarray(0, 4);
  if (String.fromCharCode(...magic) !== "\x7fELF") throw new Error(`${elf} is not an ELF file`);
  if (!exists(CA_BUNDLE)) {
    throw new Error(`${CA_BUNDLE} is missing: apt-get install ca-certificates`);
  }

  const context = options.context;
  await Deno.remove(context, { recursive: true }).catch(() => {});
  const rootfs = `${context}/rootfs`;
  await Deno.mkdir(rootfs, { recursive: true });
  if (runtime === "binary") await copyInto(rootfs, elf, "/usr/bin/llmproxy");
  else {
    await copyInto(rootfs, elf, "/usr/bin/deno");
    await copyInto(rootfs, `${ROOT}/dist/llmproxy.js`, "/app/llmproxy.js");
  }
  const ldd = await run("ldd", [elf]);
  if (!ldd.ok) throw new Error(`ldd ${elf} failed (a static executable needs no libraries)`);
  for (const lib of parseLdd(ldd.output)) await copyInto(rootfs, lib);
  await copyInto(rootfs, CA_BUNDLE);
  await Deno.writeTextFile(
    `${rootfs}/etc/passwd`,
    `root:x:0:0:root:/root:/sbin/nologin\nllmproxy:x:${UID}:${UID}:llmproxy:/tmp:/sbin/nologin\n`,
  );
  await Deno.writeTextFile(`${rootfs}/etc/group`, `root:x:0:\nllmproxy:x:${UID}:\n`);
  // /etc/hosts and /etc/resolv.conf are provided by the engine at run time.
  await Deno.writeTextFile(`${rootfs}/etc/nsswitch.conf`, "hosts: files dns\n");
  await Deno.mkdir(`${rootfs}/config`);
  await Deno.mkdir(`${rootfs}/tmp`);
  await Deno.chmod(`${rootfs}/tmp`, 0o1777);
  console.log(
    `image: context ${context} (${(await du(rootfs) / 1e6).toFixed(1)} MB in rootfs/)`,
  );
  return runtime;
}

/** Prepares the context and builds the image with podman or docker. */
export async function buildImage(options: ImageOptions): Promise<void> {
  const started = performance.now();
  const runtime = await prepareContext(options);
  if (!options.build) return;
  const engine = options.engine ?? (onPath("podman") ? "podman" : onPath("docker") ? "docker" : "");
  if (!engine) throw new Error("neither podman nor docker is installed");
  const built = await run(engine, [
    "build",
    "-f",
    `${ROOT}/Containerfile`,
    "--target",
    runtime,
    "-t",
    options.tag,
    options.context,
  ]);
  if (!built.ok) throw new Error(`${engine} build failed`);
  const size = await run(engine, ["image", "inspect", "--format", "{{.Size}}", options.tag]);
  const bytes = Number(size.output.trim());
  console.log(
    `image: built ${options.tag} with ${engine} (${runtime}), ${(bytes / 1e6).toFixed(1)} MB, in ${
      ((performance.now() - started) / 1000).toFixed(1)
    } s`,
  );
}

if (import.meta.main) {
  try {
    await buildImage(parseArgs(Deno.args));
  } catch (error) {
    console.error(`image: ${(error as Error).message}`);
    Deno.exit(1);
  }
}
