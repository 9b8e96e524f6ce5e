#!/bin/sh
# Entrypoint of the InfluxDB 2 image: fills the official image's first-boot setup variables from
# the EDGEHIVE_INFLUX_* settings that `edgehive sink` reads, so one set of (balena fleet)
# variables configures the database and its writers alike, then hands over to the official
# entrypoint. A DOCKER_INFLUXDB_INIT_* variable that is set wins. Setup runs on the first boot of
# an empty volume only; later changes to these variables do not touch an existing database.
set -eu
: "${DOCKER_INFLUXDB_INIT_MODE:=setup}"
: "${DOCKER_INFLUXDB_INIT_ORG:=${EDGEHIVE_INFLUX_ORG:-edgehive}}"
: "${DOCKER_INFLUXDB_INIT_BUCKET:=${EDGEHIVE_INFLUX_BUCKET:-edgehive}}"
: "${DOCKER_INFLUXDB_INIT_ADMIN_TOKEN:=${EDGEHIVE_INFLUX_TOKEN:-}}"
export DOCKER_INFLUXDB_INIT_MODE DOCKER_INFLUXDB_INIT_ORG DOCKER_INFLUXDB_INIT_BUCKET DOCKER_INFLUXDB_INIT_ADMIN_TOKEN
exec /entrypoint.sh "$@"
