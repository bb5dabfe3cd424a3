/** Runs tasks one at a time, in order: overlapping conversions never interleave their hypercalls. */
export class Serializer {
  #tail: Promise<unknown> = Promise.resolve();

  run<T>(task: () => Promise<T>): Promise<T> {
    const result = this.#tail.then(task, task);
    this.#tail = result.catch(() => undefined);
    return result;
  }
}
