#!/usr/bin/env bash
# The packages as a user gets them: pack every package, install the tarballs with plain npm (no workspace) into a
# fresh project, and use the installed `tdxsim` there: --version, check, a small run, TypeScript backends, and a
# backend that leaves a timer running.
set -euo pipefail
cd "$(dirname "$0")/.."
repo="$(pwd)"
PNPM="${PNPM:-npx -y pnpm@10.34.9}"
work="$(mktemp -d "${TMPDIR:-/tmp}/tdxsim-pack-smoke.XXXXXX")"
trap 'rm -rf "$work"' EXIT
step() { printf '\npack-smoke: %s\n' "$*"; }
# Runs the installed tdxsim with its output in a file; prints the first and last lines, keeps its exit code.
tdxsim() {
  local code=0
  npx tdxsim "$@" >"$work/out" 2>"$work/err" || code=$?
  grep -v '^$' "$work/out" | sed -n '1p;$p'
  [ "$code" = 0 ] || cat "$work/err" >&2
  return "$code"
}

step "build and pack every package"
$PNPM build >/dev/null
$PNPM -r --silent pack --pack-destination "$work/tarballs" >/dev/null
ls "$work/tarballs"

step "install the tarballs into a fresh npm project"
mkdir "$work/project"
cd "$work/project"
printf '{ "name": "tdxsim-user", "private": true, "type": "module" }\n' >package.json
npm install --no-audit --no-fund --loglevel=error "$work"/tarballs/*.tgz

version="$(node -p "require('./node_modules/@tdxsim/cli/package.json').version")"
step "npx tdxsim --version"
test "$(npx tdxsim --version)" = "$version"

step "npx tdxsim check --vmm kvm"
tdxsim check --vmm kvm

step "a small run, judged by the shipped expectations (one UNSAFE finding, expected)"
tdxsim run --policy linux,openvmm --vmm kvm,r11-past-end --workload dma-small --json run.json
node -e 'const r = JSON.parse(require("node:fs").readFileSync("run.json", "utf8"));
if (r.summary.total !== 4 || r.summary.unsafe !== 1 || r.summary.changes !== 0) { console.error(r.summary); process.exit(1); }'

step "the workloads from 4 vCPUs at once under PCT; the report records it and replays exactly"
tdxsim run --vcpus 4 --scheduler pct --policy linux --vmm kvm,hyperv-512 --workload dma-small --json vcpus.json
node -e 'const r = JSON.parse(require("node:fs").readFileSync("vcpus.json", "utf8"));
if (r.concurrency?.vcpus !== 4 || r.summary.ok !== 2) { console.error(r.concurrency, r.summary); process.exit(1); }'
tdxsim replay vcpus.json linux/kvm/dma-small

step "a TypeScript backend of the user's own, importing the installed packages"
cp "$repo/packages/cli/examples/my-vmm.ts" my-vmm.ts
tdxsim check --backend my-vmm.ts --guests linux
tdxsim run --backend my-vmm.ts --policy linux --workload dma-small,churn

step "the same backend as .mts, and as .ts in a directory whose package.json is CommonJS"
cp my-vmm.ts my-vmm.mts
mkdir cjs && printf '{ "name": "cjs-dir" }\n' >cjs/package.json && cp my-vmm.ts cjs/cjs-vmm.ts
tdxsim run --backend my-vmm.mts --backend cjs/cjs-vmm.ts --policy linux --workload dma-small

step "the process ends with the run even when a backend leaves a timer running"
sed 's/^  ) {}$/  ) {\n    setInterval(() => {}, 1000);\n  }/' my-vmm.ts >stray-vmm.ts
grep -q 'setInterval' stray-vmm.ts
if timeout 120 npx tdxsim run --backend stray-vmm.ts --policy linux --workload dma-small >stray.out 2>&1; then
  echo "pack-smoke: a stray timer went unreported"
  exit 1
fi
grep -q 'left 1 timer running' stray.out

step "ok: the installed tdxsim $version works from plain npm"
