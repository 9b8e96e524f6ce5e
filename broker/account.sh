#!/bin/sh
# broker/account.sh: add, remove or list the broker accounts of devices, without a restart.
# Installed in the broker image as `edgehive-account`:
#   docker compose exec broker edgehive-account add pi-7 agent
#   balena ssh <head-uuid> broker  then  edgehive-account add pi-7 agent
#
# usage: account.sh [-c CONFIG_DIR] [-t ACL_TEMPLATE] [-d ACCOUNTS_DIR] [-p BROKER_PID] COMMAND
#   add NAME ROLE [PASSWORD [ID...]]   ROLE: agent, camera, sensor, client, sink, coordinator.
#                                      NAME is the device's id (node, camera or sensor id); a
#                                      camera or sensor account may also write for each ID.
#                                      PASSWORD `-` or none: a random one. Prints the variables
#                                      to give the device.
#   remove NAME
#   list
# Accounts live in ACCOUNTS_DIR (the broker's data volume: accounts + hashed passwd), so the
# entrypoint's prepare.sh applies them again at every start; after a change this script runs
# prepare.sh and sends Mosquitto SIGHUP, which makes it re-read its password file and ACL.
# Defaults are the broker image's paths; Mosquitto is PID 1 there.
set -eu

config_dir=/mosquitto/config
template=/mosquitto/config/acl.template
accounts_dir=/mosquitto/data
pid=1
while getopts c:t:d:p: option; do
    case "$option" in
        c) config_dir=$OPTARG ;;
        t) template=$OPTARG ;;
        d) accounts_dir=$OPTARG ;;
        p) pid=$OPTARG ;;
        *) exit 64 ;;
    esac
done
shift $((OPTIND - 1))

usage() {
    echo "usage: edgehive-account [-c CONFIG_DIR] [-t ACL_TEMPLATE] [-d ACCOUNTS_DIR] [-p BROKER_PID] add NAME ROLE [PASSWORD [ID...]] | remove NAME | list" >&2
    exit 64
}
[ "$#" -ge 1 ] || usage

here=$(dirname "$0")
if [ -f "$here/prepare.sh" ]; then
    prepare="$here/prepare.sh"
else
    prepare=$(command -v broker-prepare)
fi
accounts="$accounts_dir/accounts"
hashes="$accounts_dir/passwd"
umask 077
mkdir -p "$accounts_dir"
touch "$accounts" "$hashes"

# drop NAME: the account's lines out of both files.
drop() {
    awk -v u="$1" '$1 != u' "$accounts" > "$accounts.tmp" && mv "$accounts.tmp" "$accounts"
    awk -F: -v u="$1" '$1 != u' "$hashes" > "$hashes.tmp" && mv "$hashes.tmp" "$hashes"
}

# apply: rewrite the password file and ACL, then have Mosquitto read them.
apply() {
    sh "$prepare" "$config_dir" "$template" "$accounts_dir"
    if kill -HUP "$pid" 2> /dev/null; then
        echo "broker: reloaded (SIGHUP to $pid)" >&2
    else
        echo "broker: could not signal Mosquitto (pid $pid); the change applies at its next start" >&2
    fi
}

command=$1
shift
case "$command" in
    add)
        [ "$#" -ge 2 ] || usage
        name=$1
        role=$2
        password=${3:--}
        shift 2
        [ "$#" -eq 0 ] || shift
        case "$role" in
            agent | camera | sensor | client | sink | coordinator) ;;
            *)
                echo "broker: unknown role '$role' (agent, camera, sensor, client, sink, coordinator)" >&2
                exit 2
                ;;
        esac
        case "$name$password" in
            *[!A-Za-z0-9_.+/=@%-]*)
                echo "broker: the name is letters, digits, '_', '.', '-'; the password has no ':', ',' or spaces" >&2
                exit 2
                ;;
        esac
        if [ "$#" -gt 0 ] && [ "$role" != camera ] && [ "$role" != sensor ]; then
            echo "broker: only camera and sensor accounts write for further ids" >&2
            exit 2
        fi
        if [ "$password" = - ]; then
            password=$(tr -dc 'A-Za-z0-9' < /dev/urandom | head -c 24)
        fi
        drop "$name"
        mosquitto_passwd -b "$hashes" "$name" "$password"
        echo "$name $role $*" >> "$accounts"
        apply
        echo "account $name ($role) added; give the device:"
        echo "EDGEHIVE_MQTT_URL=mqtt://$name:$password@BROKER-HOST:1883"
        case "$role" in
            agent) echo "EDGEHIVE_NODE_ID=$name" ;;
            camera) echo "EDGEHIVE_CAMERA=$name" ;;
            sensor) echo "EDGEHIVE_SENSOR=$name" ;;
        esac
        ;;
    remove)
        [ "$#" -eq 1 ] || usage
        drop "$1"
        apply
        echo "account $1 removed"
        ;;
    list)
        cat "$accounts"
        ;;
    *)
        usage
        ;;
esac
