/**
 * Resolves once everything this thread has written to stdout and stderr has been taken by the main thread.
 *
 * A worker thread's stdio reaches the process through messages to the main thread, asynchronously; the main thread
 * terminates a worker when its scenarios are done, and whatever was still on the way is dropped. That dropped the
 * `DEBUG=tdxsim:error` lines a backend fault prints (all but the first, about one run in six on a busy machine). A
 * write's callback in a worker runs only when the main thread has asked for more data, i.e. has taken what came
 * before, so waiting for an empty write on each stream is enough.
 */
export function flushStdio(): Promise<void> {
  // Nothing waiting: every write's callback has run (a write counts in writableLength until it has), i.e. the main
  // thread took all of it. No empty write then, which would cost a round trip to the main thread per scenario.
  if (process.stdout.writableLength === 0 && process.stderr.writableLength === 0) return Promise.resolve();
  const flushed = (stream: NodeJS.WritableStream): Promise<void> =>
    new Promise((resolve) => {
      stream.write('', () => resolve());
    });
  let timer: NodeJS.Timeout | undefined;
  // Bounded: a stream a backend left corked would otherwise hold the scenario's result back for ever.
  const cap = new Promise<void>((resolve) => {
    timer = setTimeout(resolve, FLUSH_LIMIT_MS);
  });
  return Promise.race([Promise.all([flushed(process.stdout), flushed(process.stderr)]), cap]).then(() =>
    clearTimeout(timer),
  );
}

/** How long a result waits for its output at most. */
const FLUSH_LIMIT_MS = 2_000;
