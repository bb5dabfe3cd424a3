import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { inject, vi } from 'vitest';
import { main } from '../src/main.js';

/** The repository root: the CLI runs from there, as `pnpm start` runs it. */
export const REPO_ROOT = fileURLToPath(new URL('../../../', import.meta.url));
export const MAIN = fileURLToPath(new URL('../src/main.ts', import.meta.url));
/** The installed `tdxsim` command: runs the compiled CLI (`dist/`). */
export const BIN = fileURLToPath(new URL('../bin/tdxsim.js', import.meta.url));
export const FIXTURES = fileURLToPath(new URL('./fixtures/', import.meta.url));
export const EXAMPLES = fileURLToPath(new URL('../examples/', import.meta.url));

export interface CliRun {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
  /** True when the process had to be killed because it did not end in time. */
  readonly killed: boolean;
  readonly wallMs: number;
}

/**
 * The command line of a `tdxsim` process: the installed command (`bin/tdxsim.js`, the compiled CLI) when the test
 * run's global setup (test/global-setup.ts) has built the packages, else, or when `from` says `source`, the sources
 * through tsx, exactly what the root package.json's `start` script runs.
 */
export function cliCommand(from: 'built' | 'source' = 'built'): string[] {
  return from === 'built' && inject('cliBuild') === 'dist'
    ? [BIN]
    : ['--conditions=@tdxsim/source', '--import', 'tsx', MAIN];
}

/**
 * Runs `tdxsim <args>` as a process ({@link cliCommand}: the built CLI, unless `from: 'source'`), stdout and stderr
 * not a TTY and without colour unless `env` says otherwise. A process that has not ended after `timeoutMs` is killed
 * and reported so.
 */
export function runCli(
  args: readonly string[],
  options: {
    env?: Record<string, string | undefined>;
    cwd?: string;
    timeoutMs?: number;
    from?: 'built' | 'source';
  } = {},
): Promise<CliRun> {
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const env: Record<string, string | undefined> = { ...process.env, NO_COLOR: '1', FORCE_COLOR: undefined };
    // From source means all of it: the matrix workers too, not the compiled ones the suite's set-up asks for.
    if (options.from === 'source') env.TDXSIM_MATRIX_WORKER = undefined;
    // A process ends its matrix workers as a user's does (the suite's own matrices keep theirs: setup-matrix-workers).
    env.TDXSIM_MATRIX_KEEP_WORKERS = undefined;
    for (const [key, value] of Object.entries(options.env ?? {})) env[key] = value;
    for (const key of Object.keys(env)) if (env[key] === undefined) delete env[key];
    const child = spawn(process.execPath, [...cliCommand(options.from), ...args], {
      cwd: options.cwd ?? REPO_ROOT,
      env: env as NodeJS.ProcessEnv,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    let killed = false;
    const timer = setTimeout(() => {
      killed = true;
      child.kill('SIGKILL');
    }, options.timeoutMs ?? 300_000);
    child.stdout.on('data', (chunk: Buffer) => {
      stdout += chunk.toString();
    });
    child.stderr.on('data', (chunk: Buffer) => {
      stderr += chunk.toString();
    });
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr, killed, wallMs: performance.now() - started });
    });
  });
}

/**
 * `main(args)` in this process, its output captured, with the environment a {@link runCli} process gets (no colour
 * unless `env` says otherwise; `undefined` removes a variable) for the time of the call. For what does not need a
 * process of its own: the exit code is main's return value, and scenarios run in worker threads of this one. Calls
 * must not overlap (the capture is of this thread's stdout and stderr). Test workers are threads: the environment
 * changed here is this thread's copy.
 */
export async function runMain(
  args: readonly string[],
  options: { env?: Record<string, string | undefined> } = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  const saved = { ...process.env };
  const env: Record<string, string | undefined> = { NO_COLOR: '1', FORCE_COLOR: undefined, ...options.env };
  for (const [key, value] of Object.entries(env)) {
    if (value === undefined) delete process.env[key];
    else process.env[key] = value;
  }
  const out = vi.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => {
    stdout += String(chunk);
    return true;
  });
  const err = vi.spyOn(process.stderr, 'write').mockImplementation((chunk: string | Uint8Array) => {
    stderr += String(chunk);
    return true;
  });
  try {
    return { code: await main(args), stdout, stderr };
  } finally {
    out.mockRestore();
    err.mockRestore();
    for (const key of Object.keys(process.env)) if (!(key in saved)) delete process.env[key];
    Object.assign(process.env, saved);
  }
}
