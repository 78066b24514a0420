#!/usr/bin/env bash
# One cold run of the benchmark suite under `cargo test`, its first test's
# time and its services' start phases from cleanroom's report
# (docs/startup.md, "The process that creates"). Interleave two builds to
# compare them:
#
#   cargo test -p cleanroom-bench --features suites --test cleanroom --no-run
#   cp target/debug/deps/cleanroom-<hash> /tmp/new-suite   # likewise an older build
#   for i in 1 2 3 4 5 6; do bench/first-test.sh /tmp/old-suite old; bench/first-test.sh /tmp/new-suite new; done
#
# Prints: first <ms> | <service> c<create> s<start> h<health> k<cache> r<ready>.
# Each run waits until the previous run's containers and network are gone:
# the engine removing them slows the next run's creates.
set -euo pipefail
bin=$1 label=${2:-run}
session=first-test-$(date +%s%N)
report=$(mktemp)
CLEANROOM_SESSION=$session CLEANROOM_REPORT_JSON=$report "$bin" >/dev/null 2>&1 || echo "FAILED $label"
python3 - "$report" "$label" <<'PY'
import json, sys
doc = json.load(open(sys.argv[1]))
test = min(doc["tests"], key=lambda t: t["started_micros"])
first = (test["started_micros"] + sum(a["micros"] for a in test.get("acquire", []))) / 1000
phases = []
for s in doc["services"]:
    st = s["starts"][0]
    phases.append("%s c%.0f s%.0f h%.0f k%.0f r%.0f" % (s["name"][:2], st.get("create_ms") or 0, st.get("start_ms") or 0,
                                                      st.get("health_ms") or 0, st.get("cache_ms") or 0, s["time_to_ready_ms"]))
print("%-4s first %.0f ms | %s" % (sys.argv[2], first, " | ".join(phases)))
PY
rm -f "$report"
for _ in $(seq 100); do
  [ -z "$(docker ps -aq --filter "label=cleanroom.session=$session")" ] &&
    [ -z "$(docker network ls -q --filter "label=cleanroom.session=$session")" ] && break
  sleep 0.2
done
sleep 1
