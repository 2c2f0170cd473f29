/**
 * Addresses waiting for their login line, by process or session id: bounded, so a flood of
 * connections that never log in cannot grow it, and expiring, so a reused pid never inherits
 * an old address.
 */
export class SessionTable {
  private readonly pending = new Map<string, { ip: string; time: number }>();

  constructor(
    private readonly windowMs: number,
    private readonly maxPending = 10_000,
  ) {}

  remember(key: string, ip: string, time: number): void {
    this.pending.delete(key);
    this.pending.set(key, { ip, time });
    // Map keeps insertion order: the first key is the oldest.
    if (this.pending.size > this.maxPending) {
      const oldest = this.pending.keys().next().value;
      if (oldest !== undefined) this.pending.delete(oldest);
    }
  }

  /** The address remembered for `key` within the window before `time`; used once. */
  take(key: string, time: number): string | undefined {
    const found = this.pending.get(key);
    this.pending.delete(key);
    if (!found || time - found.time > this.windowMs || time < found.time - this.windowMs)
      return undefined;
    return found.ip;
  }
}
