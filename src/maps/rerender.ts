/**
 * The map's text made from the previous write's where it can be: a daemon writes its whole map
 * on every grant, and at 100,000 addresses making every line again (a template, a key, a
 * string and its UTF-8 copy each) took 15 ms of a grant that adds one line. The bytes are
 * renderAddressBytes' exactly: an address's line depends only on the address and the layout
 * (the settings and the site's files), so with the same layout a line made before is copied,
 * in runs, and only addresses that were not in the previous map get lines made.
 */
import { compareAddressOrder } from "../spool/order.js";
import type { TextOrigin } from "./db/cdb.js";
import { ByteWriter, type MapLayout, mapLayout, renderAddressBytes } from "./render.js";
import type { ResolvedMap } from "./resolve.js";

/**
 * A map's bytes, and which of them were copied from the previous map's (TextOrigin: for the
 * database writers, which can copy what they built from those lines too). The same bytes as
 * the previous text keep its serial number.
 */
export interface MapText extends TextOrigin {
  bytes: Buffer;
}

/** What a map's bytes are made from, besides its addresses. */
interface LayoutInputs {
  format: string;
  mta: string;
  file: string;
  header: string | null;
  ipv6: boolean;
  key: ResolvedMap["key"];
  exactness: ResolvedMap["exactness"];
  staticText: string;
  headText: string;
}

function inputs(resolved: ResolvedMap, staticText: string, headText: string): LayoutInputs {
  const { format, mta, file, header, ipv6, key, exactness } = resolved;
  return { format, mta, file, header, ipv6, key, exactness, staticText, headText };
}

function sameInputs(a: LayoutInputs, b: LayoutInputs): boolean {
  return (Object.keys(a) as (keyof LayoutInputs)[]).every((name) => a[name] === b[name]);
}

/** One text in memory: its addresses, where each one's line starts, its bytes. */
class Written {
  addresses: string[] = [];
  starts = new Uint32Array(1);
  readonly out = new ByteWriter();
  inputs: LayoutInputs | undefined;
  serial = 0;

  /** Room for `count` addresses; the copy of their list is made by the caller. */
  fit(count: number): void {
    if (this.starts.length < count + 1) this.starts = new Uint32Array(count + 1 + (count >>> 3));
    this.addresses.length = count;
  }
}

let serials = 0;

/**
 * Makes map texts, each from the one before when the layout is the same. Two texts are kept
 * (the last and the one being made), each in a buffer reused from write to write.
 */
export class MapTextMaker {
  private last: Written | undefined;
  private spare = new Written();

  /** The addresses of the last text, checked and in order (checkedAddressList's `previous`). */
  get lastAddresses(): readonly string[] {
    return this.last?.addresses ?? [];
  }

  make(
    addresses: readonly string[],
    resolved: ResolvedMap,
    staticText: string,
    headText: string,
  ): MapText {
    const now = this.spare;
    const last = this.last;
    now.inputs = inputs(resolved, staticText, headText);
    now.serial = ++serials;
    now.fit(addresses.length);
    for (let n = 0; n < addresses.length; n++) now.addresses[n] = addresses[n] as string;
    let reused: MapText["reused"];
    if (last?.inputs && sameInputs(last.inputs, now.inputs)) {
      const runs = copyLines(addresses, last, now, mapLayout(resolved, staticText, headText));
      reused = { from: last.serial, runs };
      // Nothing changed (a login again from an address already granted): the same text, so
      // what was built from the last one still stands for this one.
      if (now.out.size === last.out.size && now.out.bytes().equals(last.out.bytes()))
        now.serial = last.serial;
    } else {
      renderAddressBytes(addresses, resolved, staticText, headText, now.out, now.starts);
    }
    this.spare = last ?? new Written();
    this.last = now;
    const text: MapText = { bytes: now.out.bytes(), serial: now.serial };
    if (reused) text.reused = reused;
    return text;
  }
}

/**
 * renderAddressBytes into `now`, copying the lines of addresses that `last` has. Both lists are
 * in compareAddressOrder's order, so one walk through both finds them; an address out of that
 * order only gets its line made again. Returns the runs copied.
 */
function copyLines(
  addresses: readonly string[],
  last: Written,
  now: Written,
  layout: MapLayout,
): number[] {
  const out = now.out;
  const before = last.out.bytes();
  const { addresses: old, starts: oldStarts } = last;
  const runs: number[] = [];
  layout.head(out);
  // The run of the previous text being copied: [runFrom, runTo), flushed when it breaks.
  let runFrom = 0;
  let runTo = 0;
  const flush = () => {
    if (runTo === runFrom) return;
    runs.push(runFrom, runTo, out.size);
    out.copy(before, runFrom, runTo);
    runFrom = runTo;
  };
  let j = 0;
  for (let n = 0; n < addresses.length; n++) {
    const address = addresses[n] as string;
    if (old[j] !== address) {
      while (j < old.length && compareAddressOrder(old[j] as string, address) < 0) j++;
    }
    if (old[j] === address) {
      const from = oldStarts[j] as number;
      const to = oldStarts[j + 1] as number;
      if (from !== runTo) {
        flush();
        runFrom = from;
        runTo = from;
      }
      now.starts[n] = out.size + (runTo - runFrom);
      runTo = to;
      j++;
      continue;
    }
    flush();
    now.starts[n] = out.size;
    const line = layout.line(address);
    if (line !== undefined) out.line(line);
  }
  flush();
  now.starts[addresses.length] = out.size;
  layout.tail(out);
  return runs;
}
