#!/usr/bin/env node
// The installed `tdxsim` command: runs the compiled CLI (in a checkout, `pnpm build` first; `pnpm start` runs the
// sources) and exits with its code, even if a backend left timers or host threads running.
import { main } from '../dist/main.js';

process.exitCode = await main(process.argv.slice(2));
process.exit();
