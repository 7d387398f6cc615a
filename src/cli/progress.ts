/** The stream a progress bar draws on (process.stderr, or a test's stand-in). */
export interface ProgressStream {
  readonly isTTY?: boolean;
  readonly columns?: number;
  write(s: string): unknown;
}

export interface Progress {
  /** `done` checks of the total so far (redraws at most ten times a second). */
  update(done: number): void;
  /** Erases the bar (call before printing results). */
  end(): void;
}

const SILENT: Progress = { update: () => undefined, end: () => undefined };

/** NO_COLOR (https://no-color.org): present and not empty turns colour off. */
export const noColor = (env: NodeJS.ProcessEnv): boolean => (env.NO_COLOR ?? "") !== "";

/**
 * A one-line progress bar on `stream` when it is a terminal — checks done, rate, time left —
 * and nothing at all otherwise (pipes, files, CI logs). Colour unless NO_COLOR is set. It
 * only ever writes to `stream` (stderr), so --json on stdout stays one clean document.
 */
export function progressBar(total: number, label: string, stream: ProgressStream = process.stderr, env: NodeJS.ProcessEnv = process.env, now: () => number = () => performance.now()): Progress {
  if (stream.isTTY !== true || total <= 0) return SILENT;
  const color = !noColor(env);
  const t0 = now();
  let last = -Infinity;
  let drawn = false;
  const draw = (done: number): void => {
    const s = (now() - t0) / 1000;
    const frac = Math.min(1, done / total);
    const rate = s > 0 ? done / s : 0;
    const eta = rate > 0 && frac < 1 ? `  ${Math.ceil((total - done) / rate)} s left` : "";
    const text = `${(frac * 100).toFixed(0).padStart(3)}%  ${group(Math.min(done, total))}/${group(total)} checks  ${group(Math.round(rate))}/s${eta}`;
    const width = Math.max(10, Math.min(40, (stream.columns ?? 80) - text.length - label.length - 6));
    const full = Math.round(frac * width);
    const bar = "█".repeat(full) + "░".repeat(width - full);
    stream.write(`\r${label} ${color ? `\x1b[32m${bar}\x1b[0m` : bar} ${text}\x1b[K`);
    drawn = true;
  };
  return {
    update(done) {
      const t = now();
      if (t - last < 100) return;
      last = t;
      draw(done);
    },
    end() {
      if (drawn) stream.write("\r\x1b[K");
    },
  };
}

/** 1234567 → "1,234,567". */
export function group(n: number): string {
  return String(n).replace(/\B(?=(\d{3})+(?!\d))/g, ",");
}
