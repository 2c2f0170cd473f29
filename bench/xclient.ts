/**
 * One RCPT probe through a real Postfix smtpd for a client address the bench chooses: XCLIENT
 * (smtpd_authorized_xclient_hosts) makes smtpd judge the session as coming from ADDR, so the
 * bench needs no source address per client. A new connection per probe: smtpd looks at its
 * tables' files only between connections (it exits when one changed, and a fresh smtpd with
 * the new table takes the connection), as it does for real clients.
 */
import { connect } from "node:net";

/** The RCPT reply code for a session from `address`, and when it arrived (performance.now()). */
export function probeRelay(port: number, address: string): Promise<{ code: number; at: number }> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: "127.0.0.1", port });
    let buffer = "";
    // What each reply we wait for is: the greeting, EHLO, XCLIENT's new greeting, EHLO, then
    // MAIL and RCPT pipelined (EHLO may not be: smtpd logs "improper command pipelining").
    const steps = ["greeting", "ehlo", "xclient", "ehlo2", "mail", "rcpt"];
    let step = 0;
    const fail = (error: Error) => {
      socket.destroy();
      reject(error);
    };
    socket.setTimeout(10_000, () => fail(new Error(`probe for ${address}: timed out`)));
    socket.on("error", fail);
    socket.setEncoding("latin1");
    socket.on("data", (chunk: string) => {
      buffer += chunk;
      for (let end = buffer.indexOf("\n"); end >= 0; end = buffer.indexOf("\n")) {
        const line = buffer.slice(0, end);
        buffer = buffer.slice(end + 1);
        if (line[3] === "-") continue; // a multi-line reply goes on
        const code = Number(line.slice(0, 3));
        const what = steps[step++];
        if (what === "rcpt") {
          const at = performance.now();
          socket.end("QUIT\r\n");
          socket.destroy();
          resolve({ code, at });
          return;
        }
        if (code < 200 || code > 299) {
          fail(new Error(`probe for ${address}: ${what}: ${line.trim()}`));
          return;
        }
        if (what === "greeting") socket.write("EHLO bench.test\r\n");
        else if (what === "ehlo") socket.write(`XCLIENT ADDR=${address} NAME=[UNAVAILABLE]\r\n`);
        else if (what === "xclient") socket.write("EHLO bench.test\r\n");
        else if (what === "ehlo2")
          socket.write("MAIL FROM:<a@bench.test>\r\nRCPT TO:<b@remote.example>\r\n");
      }
    });
  });
}
