#!/bin/sh
# broker/healthcheck.sh [PORT]: healthy when the broker answers an authenticated subscription
# to its own $SYS/broker/uptime (retained, so it arrives at once) within 5 seconds. It logs in
# with the first account of EDGEHIVE_BROKER_USERS, so it fails on a broken password file too.
set -eu
port=${1:-1883}
first=$(printf '%s' "${EDGEHIVE_BROKER_USERS:-}" | tr ',' ' ' | awk '{ print $1 }')
user=${first%%:*}
password=${first#*:}
password=${password%%:*} # user:password[:role[:ids]]
# shellcheck disable=SC2016  # $SYS is a topic, not a variable
exec mosquitto_sub -h 127.0.0.1 -p "$port" -u "$user" -P "$password" -i "healthcheck-$$" \
    -t '$SYS/broker/uptime' -C 1 -W 5
