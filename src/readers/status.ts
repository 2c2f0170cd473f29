/**
 * Tells a reader's owner when its status() line changed, so that STATUS= follows the reader
 * without anyone polling it: an idle reader then costs no wake-ups. The reader calls `check()`
 * after anything that may change the line; the owner hears only of real changes.
 */
export class StatusChanges {
  private listener: (() => void) | undefined;
  private last: string | undefined;

  constructor(private readonly status: () => string) {}

  listen(listener: (() => void) | undefined): void {
    this.listener = listener;
    this.last = this.status();
  }

  check(): void {
    if (!this.listener) return;
    const now = this.status();
    if (now === this.last) return;
    this.last = now;
    this.listener();
  }
}
