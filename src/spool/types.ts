/** One address allowed to relay: who logged in from it, through which agent, and when. */
export interface SpoolEntry {
  /** Canonical address (see address/ip.ts); also the entry's key. */
  ip: string;
  user: string;
  agent: string;
  /** When the server logged the login, in ms since the epoch. */
  login: number;
  /**
   * login + relay.period at the time of the login, in ms since the epoch; while sessions are
   * open, at least each one's start + relay.session_max (see spool/sessions.ts).
   */
  expires: number;
  /** Sessions from this address whose end the server has not logged yet. */
  sessions?: OpenSession[];
  /** With sessions: when the entry expires once they have all ended (ms since the epoch). */
  until?: number;
}

/** A login's session that is still open. */
export interface OpenSession {
  /** Who logged it and the server's own id: host, instance, agent, then pid or session id. */
  id: string;
  user: string;
  /** When the login was logged, ms since the epoch. */
  since: number;
}

export interface PutOptions {
  /** Write each entry even where the stored one supersedes it. */
  replace?: boolean;
}

/**
 * Where entries live. The file store is the first backend; others (Redis) implement the same
 * contract. Every method validates addresses before anything touches storage.
 */
export interface SpoolStore {
  /**
   * Adds or refreshes entries. A later login wins; an older one never shortens an entry, unless
   * `replace` is set (a session's end): then each entry is replaced as it is, in one atomic
   * write, so that no instant exists when the address has no entry.
   */
  put(entries: readonly SpoolEntry[], options?: PutOptions): Promise<SpoolEntry[]>;
  /** Removes the given addresses; returns those that were present. */
  remove(ips: readonly string[]): Promise<string[]>;
  /** Removes entries whose expiry is at or before `now`; returns them. */
  removeExpired(now: number): Promise<SpoolEntry[]>;
  /** Removes every entry; returns how many there were. */
  wipe(): Promise<number>;
  /** Every entry, sorted by address. */
  list(): Promise<readonly SpoolEntry[]>;
  /**
   * Runs `fn` holding the store's exclusive lock, shared by every process that uses the store.
   * The lock dies with its holder, so a killed process never blocks the others.
   */
  exclusive<T>(fn: () => Promise<T>): Promise<T>;
  /**
   * False while the store cannot tell what it holds (Redis unreachable since this process
   * started): the map is then left as it is, neither emptied nor rebuilt from a guess.
   */
  known(): boolean;
  /** Resolves once the store knows what it holds, or has waited as long as it may for that. */
  opened(): Promise<void>;
  /** Calls `listener` when entries may have changed outside this process; returns a stop. */
  watch(listener: () => void): () => void;
  /** One line for STATUS when the store has something to say (Redis' connection), or "". */
  status(): string;
  /** Lets go of connections and watches. */
  close(): Promise<void>;
}
