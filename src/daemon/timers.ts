// setTimeout's limit (about 24.8 days); longer waits are done in steps.
const MAX_DELAY_MS = 2 ** 31 - 1;
// Entries other processes add are not seen here until the next change: look again at least this
// often. The cleanup timer covers them too while the daemon is down.
const MAX_WAIT_MS = 5 * 60_000;

/** Runs `fire` when the next entry expires: one timer, moved as the spool changes. */
export class ExpiryTimer {
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly fire: () => Promise<void>,
    private readonly onError: (error: Error) => void,
    private readonly clock: () => number = Date.now,
  ) {}

  /** Sets the timer for `at` (ms since the epoch); undefined: only the periodic look. */
  schedule(at: number | undefined): void {
    this.cancel();
    const wait = at === undefined ? MAX_WAIT_MS : Math.max(0, at - this.clock());
    this.timer = setTimeout(
      () => {
        this.timer = undefined;
        this.fire().catch(this.onError);
      },
      Math.min(wait, MAX_WAIT_MS, MAX_DELAY_MS),
    );
  }

  cancel(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
  }
}
