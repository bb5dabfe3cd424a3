#!/usr/bin/env node
// The installed CLI runs the compiled code (run `pnpm build` first in a checkout; `pnpm start` runs the sources).
import '../dist/main.js';
