import { closeSync, constants, mkdirSync, openSync } from "node:fs";
import { dirname } from "node:path";
import { native } from "../native.js";

/**
 * An exclusive lock shared by every process that opens the same file: flock(2), which the
 * kernel drops when its holder dies, so a killed `poprelay add` can never wedge the daemon.
 * Callers in one process queue in memory first: flock's blocking wait runs on libuv's small
 * thread pool, and several waiters there could starve the holder's own file I/O.
 */
export class FileLock {
  private queue: Promise<unknown> = Promise.resolve();

  constructor(readonly path: string) {}

  /** Runs `fn` holding the lock; `fn` gets the lock file's descriptor (see FileSpoolStore). */
  run<T>(fn: (fd: number) => Promise<T>): Promise<T> {
    const result = this.queue.then(() => this.holding(fn));
    this.queue = result.catch(() => undefined);
    return result;
  }

  private async holding<T>(fn: (fd: number) => Promise<T>): Promise<T> {
    const addon = native();
    mkdirSync(dirname(this.path), { recursive: true, mode: 0o750 });
    const fd = openSync(this.path, constants.O_RDWR | constants.O_CREAT, 0o640);
    try {
      await addon.flock(fd, addon.LOCK_EX);
      return await fn(fd);
    } finally {
      // Closing the descriptor releases the lock.
      closeSync(fd);
    }
  }
}
