import { readFileSync } from "node:fs";
import { join } from "node:path";
import type { Rejection } from "../../src/matcher/matcher.js";
import type { JournalFields, LogEntry } from "../../src/readers/types.js";
import { ROOT } from "../helpers.js";

/** One annotated sample line of an agent profile (src/matcher/agents/NAME.samples). */
export interface Sample {
  /** 1-based line number in the samples file. */
  line: number;
  entry: LogEntry;
  expect: { user: string; ip: string } | { reject: Rejection; why: string };
}

const EXPECT = /^# expect: (\{.*\})$/;
const REJECT = /^# reject: ([a-z-]+)\s+(.*)$/;

export function samplesFile(agent: string): string {
  return join(ROOT, "src/matcher/agents", `${agent}.samples`);
}

/** Parses a samples file; an annotation without a line, or a line without one, throws. */
export function readSamples(agent: string): Sample[] {
  const file = samplesFile(agent);
  const lines = readFileSync(file, "utf8").split("\n");
  const samples: Sample[] = [];
  let pending: Sample["expect"] | undefined;
  lines.forEach((text, index) => {
    const where = `${file}:${index + 1}`;
    const expect = EXPECT.exec(text);
    const reject = REJECT.exec(text);
    if (expect?.[1] || reject?.[1]) {
      if (pending) throw new Error(`${where}: annotation without a sample line before it`);
      pending = expect?.[1]
        ? JSON.parse(expect[1])
        : { reject: reject?.[1] as Rejection, why: reject?.[2] ?? "" };
      return;
    }
    if (text === "" || text.startsWith("#")) return;
    if (!pending) throw new Error(`${where}: sample line without an annotation`);
    const entry: LogEntry = text.startsWith("{")
      ? { kind: "journal", fields: JSON.parse(text) as JournalFields }
      : { kind: "line", text };
    samples.push({ line: index + 1, entry, expect: pending });
    pending = undefined;
  });
  if (pending) throw new Error(`${file}: the last annotation has no sample line`);
  return samples;
}
