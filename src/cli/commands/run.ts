import { Daemon } from "../../daemon/daemon.js";
import { createNotifier } from "../../daemon/notify.js";
import type { CommandContext } from "../command.js";

/** `poprelay run`: the daemon, in the foreground, until SIGTERM or SIGINT. */
export async function run(context: CommandContext): Promise<number> {
  const { log } = context;
  const notifier = createNotifier(log);
  const daemon = new Daemon({
    configDir: context.configDir,
    instance: context.instance,
    log,
    notifier,
  });
  let stopping = false;
  let exit: (code: number) => void = () => {};
  const stopped = new Promise<number>((resolve) => {
    exit = resolve;
  });
  const stop = (why: string, code = 0) => {
    if (stopping) return;
    stopping = true;
    log.notice(`${why}: stopping`);
    daemon.stop().then(
      () => exit(code),
      (error: Error) => {
        log.error(`stopping: ${error.message}`);
        exit(1);
      },
    );
  };
  // The signal handlers come before start() sends READY=1: systemd 262 refuses to start a
  // Type=notify-reload unit whose main process has no SIGHUP handler by then ("lacks handler
  // for reload signal HUP"), and a SIGHUP before it would end Node.js. A SIGTERM while
  // starting still stops gracefully, once the start is done.
  process.on("SIGHUP", () => {
    // A reload that failed halfway left nothing reading: exit, and systemd restarts us.
    daemon.reload().catch((error: Error) => {
      log.error(`reload failed halfway: ${error.message}`);
      stop("reload failed", 1);
    });
  });
  process.once("SIGTERM", () => stop("SIGTERM"));
  process.once("SIGINT", () => stop("SIGINT"));
  try {
    await daemon.start();
  } catch (error) {
    if (stopping) return stopped;
    throw error;
  }
  if (!stopping) log.info(`running (notify: ${notifier.via}): ${daemon.status()}`);
  return stopped;
}
