#!/bin/sh
# Entrypoint of the broker image: write the password file and ACL from the environment and from
# the accounts added with edgehive-account, kept in the data volume (prepare.sh), make sure the
# persistence volume belongs to Mosquitto's user, then run the command (Mosquitto with /mosquitto/config/mosquitto.conf, which is broker/mosquitto.conf).
set -eu
broker-prepare /mosquitto/config /mosquitto/config/acl.template /mosquitto/data
if [ "$(id -u)" = 0 ]; then
    chown -R mosquitto:mosquitto /mosquitto/data
fi
exec "$@"
