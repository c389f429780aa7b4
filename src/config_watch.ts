/**
 * Reloads when the config file's content changes. The watch is on the directories, not on the
 * file: an editor that saves by renaming a new file over the old one, and a Kubernetes ConfigMap
 * volume, replace the file rather than write it. In a ConfigMap volume `config.yaml` is a symlink
 * to `..data/config.yaml`, `..data` a symlink to a timestamped directory, and an update renames a
 * new `..data_tmp` symlink over `..data` and deletes the old directory: a watch on the file
 * (which follows the symlinks) sees that one deletion and then nothing ever again.
 *
 * So this watches, without recursion, the directory named in the path (where `..data` is
 * swapped) and the directory of the file it resolves to now (where an edit through a symlink
 * lands), re-resolving after every change. Any event there, debounced, reads the file: only
 * bytes that differ from the last ones read trigger a reload, so other files in the directory,
 * `touch` and a ConfigMap update that left this key alone cost one read and nothing else.
 *
 * @module
 */
import type { Logger } from "./log.ts";

/** Options of {@linkcode watchConfig}. */
export interface ConfigWatchOptions {
  /** Reloads the config; must not reject (nothing here could handle it). */
  reload: () => unknown;
  log: Logger;
  /** Quiet time after the last event before the file is read (editors write in steps). @default 300 */
  debounceMs?: number;
}

/** A running watch; `close()` ends it (idempotent). */
export interface ConfigWatch {
  close(): void;
}

/**
 * Watches the config at `path` (see the module doc). Undefined, with a warning, when it cannot
 * be watched; also undefined, silently, when `path` is not a regular file (`/dev/stdin`: reading
 * it again would consume the input).
 */
export function watchConfig(path: string, options: ConfigWatchOptions): ConfigWatch | undefined {
  let content: Uint8Array;
  try {
    if (!Deno.statSync(path).isFile) return undefined;
    content = Deno.readFileSync(path);
  } catch (error) {
    options.log.warn(`cannot watch ${path} for changes; reload with SIGHUP instead`, { error });
    return undefined;
  }
  try {
    return new DirectoryWatch(path, content, options);
  } catch (error) {
    options.log.warn(`cannot watch ${path} for changes; reload with SIGHUP instead`, { error });
    return undefined;
  }
}

class DirectoryWatch implements ConfigWatch {
  readonly #path: string;
  readonly #options: ConfigWatchOptions;
  /** The bytes read last: the config serving now, or a newer one whose reload was tried. */
  #content: Uint8Array;
  /** The directories watched now, joined: compared after each change. */
  #dirs = "";
  #watcher: Deno.FsWatcher | undefined;
  #timer: ReturnType<typeof setTimeout> | undefined;
  /** Checks run one after another. */
  #checking: Promise<void> = Promise.resolve();
  #closed = false;

  constructor(path: string, content: Uint8Array, options: ConfigWatchOptions) {
    this.#path = path;
    this.#content = content;
    this.#options = options;
    this.#rewatch(Deno.realPathSync(path));
  }

  close(): void {
    this.#closed = true;
    clearTimeout(this.#timer);
    this.#watcher?.close();
    this.#watcher = undefined;
  }

  /** Watches the directories for the file resolving to `real`, unless they are watched already. */
  #rewatch(real: string): void {
    const dirs = [...new Set([dirname(this.#path), dirname(real)])];
    if (dirs.join("\n") === this.#dirs) return;
    this.#watcher?.close();
    const watcher = Deno.watchFs(dirs, { recursive: false });
    this.#watcher = watcher;
    this.#dirs = dirs.join("\n");
    (async () => {
      for await (const event of watcher) {
        // Other files here (a log written next to the config) must not keep resetting the
        // debounce: a stream of their events would hold off a real change for ever.
        if (!event.paths.some((path) => this.#concerns(path, real))) continue;
        clearTimeout(this.#timer);
        this.#timer = setTimeout(() => {
          this.#checking = this.#checking.then(() => this.#check());
        }, this.#options.debounceMs ?? 300);
      }
    })().catch(() => {}); // closed
  }

  /**
   * Whether an event on `path` may change what the config path reads: the file under its name
   * or the name it resolves to, or a `..` entry (the kubelet's `..data`, `..data_tmp` and
   * timestamped directories).
   */
  #concerns(path: string, real: string): boolean {
    const name = basename(path);
    return name === basename(this.#path) || name === basename(real) || name.startsWith("..");
  }

  async #check(): Promise<void> {
    if (this.#closed) return;
    let real: string;
    let content: Uint8Array;
    try {
      real = await Deno.realPath(this.#path);
      content = await Deno.readFile(real);
    } catch (error) {
      // Mid-swap, or removed: the config serving now stays; the next change is seen.
      this.#options.log.debug(`cannot read ${this.#path} after a change`, { error });
      return;
    }
    if (this.#closed) return;
    try {
      this.#rewatch(real);
    } catch (error) {
      this.#options.log.warn(`cannot watch ${this.#path} for changes any more`, { error });
    }
    if (equalBytes(content, this.#content)) return;
    this.#content = content;
    this.#options.log.info(`${this.#path} changed: reloading`);
    this.#options.reload();
  }
}

/** The last part of a path. */
function basename(path: string): string {
  return path.slice(Math.max(path.lastIndexOf("/"), path.lastIndexOf("\\")) + 1);
}

/** The directory part of a path (`.` for a bare file name). */
function dirname(path: string): string {
  const slash = Math.max(path.lastIndexOf("/"), path.lastIndexOf("\\"));
  if (slash < 0) return ".";
  return slash === 0 ? path.slice(0, 1) : path.slice(0, slash);
}

function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
