import { accessSync, constants, existsSync, mkdirSync, statSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { UsageError } from '../usage-error.js';

/**
 * Checks, before a long run starts, that a report can be written at `file` (`--json`, `--html`, `--junit`): its
 * directory exists and is writable, and the path is not a directory. A mistake is a usage error naming the option.
 */
export function checkOutputFile(option: string, file: string | undefined): void {
  if (file === undefined) return;
  const path = resolve(file);
  if (existsSync(path)) {
    if (statSync(path).isDirectory()) throw new UsageError(`${option} "${file}" is a directory, not a file`);
    try {
      accessSync(path, constants.W_OK);
    } catch {
      throw new UsageError(`${option} "${file}" is not writable`);
    }
    return;
  }
  const directory = dirname(path);
  if (!existsSync(directory))
    throw new UsageError(`${option} "${file}": directory "${directory}" does not exist`);
  try {
    accessSync(directory, constants.W_OK);
  } catch {
    throw new UsageError(`${option} "${file}": directory "${directory}" is not writable`);
  }
}

/** Creates `dir` for an option that writes a file per scenario (`--trace-json`), or names why it cannot. */
export function prepareOutputDirectory(option: string, dir: string | undefined): void {
  if (dir === undefined) return;
  const path = resolve(dir);
  if (existsSync(path) && !statSync(path).isDirectory())
    throw new UsageError(`${option} "${dir}" is a file, not a directory`);
  try {
    mkdirSync(path, { recursive: true });
    accessSync(path, constants.W_OK);
  } catch (error) {
    throw new UsageError(`${option} "${dir}" cannot be written: ${(error as Error).message.split('\n')[0]}`);
  }
}

/** Checks that an input file (`--expect`, `--baseline`, a report) exists and is a file. */
export function checkInputFile(option: string, file: string): void {
  if (!existsSync(file)) throw new UsageError(`${option} "${file}" does not exist`);
  if (statSync(file).isDirectory()) throw new UsageError(`${option} "${file}" is a directory, not a file`);
}
