/**
 * Live reload when the config is a Kubernetes ConfigMap volume. The kubelet never writes the
 * file in place: `/config/config.yaml` is a symlink to `..data/config.yaml`, `..data` a symlink
 * to a timestamped directory, and an update writes a new directory, points a new `..data_tmp`
 * symlink at it, renames that over `..data` (atomic) and deletes the old directory. The file the
 * watcher first resolved is gone; the path now reads the new content.
 */
import assert from "node:assert/strict";
import { loadConfigFile } from "../../src/config/load.ts";
import { startApp } from "../../src/app.ts";
import { createLogger } from "../../src/log.ts";
import { type MockUpstream, startMockUpstream } from "../../tools/mock_upstream.ts";
import { chat, delay } from "../_helpers/raw_http.ts";

function yaml(mock: MockUpstream, extraForward?: string): string {
  return `httpServer:
  forwards:
    - {name: main, port: 0, address: 127.0.0.1, defaultGroup: g}
${extraForward ? `    - {name: ${extraForward}, port: 0, address: 127.0.0.1, defaultGroup: g}` : ""}
  admin: {port: 0}
upstreams:
  - {name: u1, url: "${mock.url}/v1/chat/completions"}
upstreamGroups:
  - {name: g, upstreams: [{name: u1}]}
`;
}

/** A ConfigMap volume as the kubelet lays it out (see the module doc). */
class ConfigMapVolume {
  #generation = 0;
  constructor(readonly dir: string) {}

  get path(): string {
    return `${this.dir}/config.yaml`;
  }

  /** The first version: the timestamped directory, `..data` and the file's symlink. */
  async create(text: string): Promise<void> {
    const data = await this.#writeGeneration(text);
    await Deno.symlink(data, `${this.dir}/..data`);
    await Deno.symlink("..data/config.yaml", this.path);
  }

  /** An update: a new directory, `..data_tmp` renamed over `..data`, the old directory removed. */
  async update(text: string): Promise<void> {
    const old = await Deno.readLink(`${this.dir}/..data`);
    const data = await this.#writeGeneration(text);
    await Deno.symlink(data, `${this.dir}/..data_tmp`);
    await Deno.rename(`${this.dir}/..data_tmp`, `${this.dir}/..data`);
    await Deno.remove(`${this.dir}/${old}`, { recursive: true });
  }

  async #writeGeneration(text: string): Promise<string> {
    const name = `..2026_12_01_00_00_0${this.#generation++}.${crypto.randomUUID().slice(0, 8)}`;
    await Deno.mkdir(`${this.dir}/${name}`);
    await Deno.writeTextFile(`${this.dir}/${name}/config.yaml`, text);
    return name; // relative, as the kubelet's links are
  }
}

async function until(condition: () => boolean, ms: number): Promise<boolean> {
  const deadline = performance.now() + ms;
  while (!condition() && performance.now() < deadline) await delay(50);
  return condition();
}

/** The proxy on the config at `path`, watching it; `loads` counts the reloads it read. */
async function watchedApp(path: string) {
  const env = () => undefined;
  const logs: string[] = [];
  const counter = { loads: 0 };
  const app = await startApp(await loadConfigFile(path, env), {
    log: createLogger({ level: "debug", json: true, write: (line) => logs.push(line) }),
    handleSignals: false,
    env,
    watchPath: path,
    reload: () => {
      counter.loads++;
      return loadConfigFile(path, env);
    },
  });
  return {
    app,
    logs,
    get loads() {
      return counter.loads;
    },
  };
}

Deno.test("reload: a ConfigMap update (the kubelet's ..data symlink swap) is picked up, twice", async () => {
  const mock = await startMockUpstream({ name: "m" });
  const dir = await Deno.makeTempDir({ prefix: "llmproxy-configmap-" });
  const volume = new ConfigMapVolume(dir);
  await volume.create(yaml(mock));
  const { app, logs } = await watchedApp(volume.path);
  try {
    await delay(100); // the watcher is set up
    await volume.update(yaml(mock, "first"));
    assert.ok(await until(() => app.forwards.has("first"), 3000), `first swap: ${logs.join("")}`);

    // The watch survives the swap: the old directory it may have followed is gone.
    await volume.update(yaml(mock, "second"));
    assert.ok(
      await until(() => app.forwards.has("second") && !app.forwards.has("first"), 3000),
      `second swap: ${logs.join("")}`,
    );
    const port = app.forwards.get("second")!.port;
    const response = await fetch(`http://127.0.0.1:${port}/v1/chat/completions`, {
      method: "POST",
      body: chat(),
    });
    assert.equal(response.status, 200);
    await response.body?.cancel();
  } finally {
    await app.stop();
    await mock.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("reload: the watcher ignores changes next to the config that leave its content as it was", async () => {
  const mock = await startMockUpstream({ name: "m" });
  const dir = await Deno.makeTempDir({ prefix: "llmproxy-configmap-" });
  const volume = new ConfigMapVolume(dir);
  await volume.create(yaml(mock));
  const watched = await watchedApp(volume.path);
  const { app, logs } = watched;
  try {
    await delay(100);
    // Another key of the same ConfigMap changes; config.yaml's bytes stay the same.
    await Deno.writeTextFile(`${dir}/other.txt`, "unrelated");
    await volume.update(yaml(mock));
    await delay(800); // longer than the watcher's debounce
    assert.equal(watched.loads, 0, logs.join(""));
  } finally {
    await app.stop();
    await mock.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("reload: a log written next to the config all the time does not hold off a change", async () => {
  const mock = await startMockUpstream({ name: "m" });
  const dir = await Deno.makeTempDir({ prefix: "llmproxy-config-dir-" });
  const path = `${dir}/config.yaml`;
  await Deno.writeTextFile(path, yaml(mock));
  const { app, logs } = await watchedApp(path);
  // Every 50 ms, well inside the watcher's 300 ms debounce.
  const log = await Deno.open(`${dir}/proxy.log`, { create: true, append: true });
  const writer = setInterval(() => log.write(new TextEncoder().encode("line\n")), 50);
  try {
    await delay(200);
    await Deno.writeTextFile(path, yaml(mock, "added"));
    assert.ok(await until(() => app.forwards.has("added"), 3000), logs.join(""));
  } finally {
    clearInterval(writer);
    log.close();
    await app.stop();
    await mock.close();
    await Deno.remove(dir, { recursive: true });
  }
});
