// LXD's ioprogress tracker for downloads: "<label>: <percent>% (<speed>/s)" (no label for LXD peers) with a decimal
// byte size, reported when the percentage moves (and at most every 500 ms otherwise).
import { byteSize } from "../progress.js";
import type { TransferOptions } from "./types.js";

export function progressTracker(label: string, report: TransferOptions["progress"], intervalMs = 500): (done: number, total: number) => void {
  const start = Date.now();
  let lastPercent = -1;
  let lastAt = 0;
  return (done, total) => {
    if (!report) return;
    const now = Date.now();
    const percent = total > 0 ? Math.min(100, Math.floor((done * 100) / total)) : 0;
    if (percent === lastPercent || now - lastAt < intervalMs) {
      if (!(percent === 100 && lastPercent !== 100)) return;
    }
    lastPercent = percent;
    lastAt = now;
    const speed = done / Math.max((now - start) / 1000, 0.001);
    const body = total > 0 ? `${percent}% (${byteSize(speed)}/s)` : `${byteSize(done)} (${byteSize(speed)}/s)`;
    const text = label ? `${label}: ${body}` : body;
    report(text, percent, done, speed);
  };
}
