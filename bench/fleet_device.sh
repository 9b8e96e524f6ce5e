#!/bin/bash
# bench/fleetsim.py (and optionally bench/broker_conns.py) on a lent many-core machine that has
# Python 3.12 but neither the project's venv nor Debian's mosquitto, and no network.
# Prepare the carried folder .fleet/ here first (ignored: add /.fleet/ to .git/info/exclude):
#   mkdir -p .fleet/whl .fleet/lib && cp bench/fleet_device.sh .fleet/run.sh
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .fleet/whl \
#     paho-mqtt pydantic pydantic-core annotated-types typing-inspection typing-extensions orjson pyyaml
#   (pydantic-core at the version pydantic requires), then Debian's broker and its libraries:
#   cp /usr/sbin/mosquitto .fleet/ && for l in $(ldd /usr/sbin/mosquitto | awk '/=>/{print $3}'); do cp -L "$l" .fleet/lib/; done
#   (leave libc, libm and libresolv out of .fleet/lib). The machine must have numpy, psutil and OpenCV.
# Then run `bash .fleet/run.sh` there with .fleet carried; sizes by FLEET_NODES, FLEET_PROCS, FLEET_CONNS.
set -uo pipefail
ROOT=$PWD
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .fleet/whl/*.whl || exit 3
export PYTHONPATH=/tmp/site:$ROOT
mkdir -p /tmp/bin
printf '#!/bin/sh\nexec %s -c "import sys; from edgehive.cli import main; sys.exit(main())" "$@"\n' "$(command -v python3)" > /tmp/bin/edgehive
printf '#!/bin/sh\nLD_LIBRARY_PATH=%s/.fleet/lib exec %s/.fleet/mosquitto "$@"\n' "$ROOT" "$ROOT" > /tmp/bin/mosquitto
chmod +x /tmp/bin/edgehive /tmp/bin/mosquitto .fleet/mosquitto
export PATH=/tmp/bin:$PATH BENCH_MOSQUITTO=/tmp/bin/mosquitto PYTHONUNBUFFERED=1
ulimit -n 65536 2>/dev/null || true
{ nproc; grep -m1 "model name" /proc/cpuinfo; python3 --version; /tmp/bin/mosquitto -h | head -1; } 2>&1 | tee "$OUT/machine.txt"
edgehive --help >/dev/null || { echo "edgehive does not start"; exit 4; }
timeout "${FLEET_TIMEOUT:-400}" python3 bench/fleetsim.py --nodes "${FLEET_NODES:-5000,20000}" --sim-procs "${FLEET_PROCS:-8}" \
  --connections "${FLEET_CONNS:-32}" --steady-s "${FLEET_STEADY:-10}" --jobs 2000 --json "$OUT/fleetsim.json" 2>&1 | tee "$OUT/fleetsim.txt"
if [ -n "${BROKER_NODES:-}" ]; then
  timeout "${BROKER_TIMEOUT:-150}" python3 bench/broker_conns.py --nodes "$BROKER_NODES" --seconds 8 --json "$OUT/broker_conns.json" 2>&1 | tee "$OUT/broker_conns.txt"
fi
