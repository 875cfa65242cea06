#!/usr/bin/env bash
# Checks that the committed dashboard build (gateway/dashboard/dist/, which the gateway
# binary embeds) is what its source builds to: rebuilds the page into a temp dir with the
# locked Vite and fails, showing the differing files, when the result differs from dist/.
# A source change committed without `npm run build` would otherwise ship stale.
#
# Vite's output is reproducible (same source and lock file, same bytes and hashed
# names), so any difference means dist/ is stale or was edited by hand. Fix with:
#
#   cd gateway/dashboard && npm ci && npm run build   # then commit dist/
#
# Installs node_modules (npm ci, from package-lock.json) when missing; needs node 20+.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../gateway/dashboard"

die() { printf 'check-dashboard: error: %s\n' "$*" >&2; exit 1; }

command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 ||
    die "node and npm are needed to check gateway/dashboard/dist (Debian: apt-get install nodejs npm)"
if [ ! -x node_modules/.bin/vite ]; then
    echo "  - npm ci in gateway/dashboard (vite, uplot from package-lock.json)"
    npm ci --no-audit --no-fund --loglevel=error
fi

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
# Straight to vite: `npm run build` would also write dist/ and touch dashboard.rs.
node_modules/.bin/vite build --outDir "$out/dist" --emptyOutDir --logLevel error
if ! diff -r "$out/dist" dist >"$out/diff" 2>&1; then
    head -40 "$out/diff" >&2
    die "gateway/dashboard/dist is not the build of gateway/dashboard/src: run 'npm run build' there and commit dist/"
fi
echo "  - gateway/dashboard/dist matches a fresh build of its source"
