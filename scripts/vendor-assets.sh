#!/usr/bin/env bash
# Re-vendors the front-end assets under static/vendor/ from the npm registry, at the pinned
# versions below. keygov serves them itself: no CDN, the dashboard works offline.
# Run it only to upgrade an asset; commit what it writes.
set -euo pipefail
cd "$(dirname "$0")/.."

BOOTSTRAP=5.3.9
CHARTJS=4.6.1
HTMX=2.0.11

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm init -y >/dev/null &&
    npm install --silent --no-audit --no-fund "bootstrap@$BOOTSTRAP" "chart.js@$CHARTJS" "htmx.org@$HTMX")
nm=$work/node_modules
out=static/vendor
rm -rf "$out"
mkdir -p "$out/bootstrap" "$out/chartjs" "$out/htmx"
cp "$nm/bootstrap/dist/css/bootstrap.min.css" "$nm/bootstrap/dist/js/bootstrap.bundle.min.js" \
    "$nm/bootstrap/LICENSE" "$out/bootstrap/"
cp "$nm/chart.js/dist/chart.umd.min.js" "$nm/chart.js/LICENSE.md" "$out/chartjs/"
cp "$nm/htmx.org/dist/htmx.min.js" "$nm/htmx.org/LICENSE" "$out/htmx/"
# Source-map comments point at files we do not ship; browsers would ask for them.
sed -i -e '/sourceMappingURL=/d' "$out"/*/*.js "$out"/*/*.css
cat >"$out/VERSIONS" <<VERSIONS
bootstrap $BOOTSTRAP
chart.js $CHARTJS
htmx.org $HTMX
VERSIONS
echo "vendored into $out:"
cat "$out/VERSIONS"
