#!/bin/sh
# Runs once, on the first boot of an empty volume, after the official image's `influx setup`
# (the image runs every executable /docker-entrypoint-initdb.d/*.sh with the influx CLI already
# logged in and DOCKER_INFLUXDB_INIT_BUCKET_ID set):
#  - maps the InfluxQL database EDGEHIVE_INFLUX_DATABASE (retention policy autogen) onto the
#    bucket, so the InfluxQL dashboards in grafana/ run on InfluxDB 2 as they do on 1.x;
#  - creates the v1 user EDGEHIVE_INFLUX_USERNAME / EDGEHIVE_INFLUX_PASSWORD with read and write on
#    the bucket: Grafana's InfluxQL datasource logs in with it.
set -eu
database=${EDGEHIVE_INFLUX_DATABASE:-edgehive}
influx v1 dbrp create --db "$database" --rp autogen --default \
    --bucket-id "$DOCKER_INFLUXDB_INIT_BUCKET_ID" --org "$DOCKER_INFLUXDB_INIT_ORG"
if [ -n "${EDGEHIVE_INFLUX_USERNAME:-}" ] && [ -n "${EDGEHIVE_INFLUX_PASSWORD:-}" ]; then
    influx v1 auth create --username "$EDGEHIVE_INFLUX_USERNAME" --password "$EDGEHIVE_INFLUX_PASSWORD" \
        --read-bucket "$DOCKER_INFLUXDB_INIT_BUCKET_ID" --write-bucket "$DOCKER_INFLUXDB_INIT_BUCKET_ID" \
        --org "$DOCKER_INFLUXDB_INIT_ORG"
fi
