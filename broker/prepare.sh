#!/bin/sh
# broker/prepare.sh CONFIG_DIR [ACL_TEMPLATE]
#
# Writes the two files Mosquitto's auth needs, from the environment, every time the broker
# starts (so changing a balena variable is all it takes to change a password):
#   CONFIG_DIR/passwd  one account per `user:password` in EDGEHIVE_BROKER_USERS (comma- or
#                      space-separated; a password cannot contain either), hashed by mosquitto_passwd
#   CONFIG_DIR/acl     ACL_TEMPLATE (default: broker/acl beside this script) with its prefix
#                      edgehive/v1 rewritten to EDGEHIVE_PREFIX
# The broker image runs it from its entrypoint; the tests run this same script.
set -eu

if [ "$#" -lt 1 ]; then
    echo "usage: prepare.sh CONFIG_DIR [ACL_TEMPLATE]" >&2
    exit 64
fi
dir=$1
template=${2:-$(dirname "$0")/acl}

users=$(printf '%s' "${EDGEHIVE_BROKER_USERS:-}" | tr ',' ' ')
if [ -z "$(printf '%s' "$users" | tr -d ' ')" ]; then
    echo "broker: EDGEHIVE_BROKER_USERS is empty; set it to 'coordinator:PASSWORD sink:PASSWORD device:PASSWORD' (docs/DEPLOY.md)" >&2
    exit 2
fi

prefix=${EDGEHIVE_PREFIX:-edgehive/v1}
prefix=${prefix#/}
prefix=${prefix%/}
case "$prefix" in
    "" | *[\#+\&\|\\]*)
        echo "broker: EDGEHIVE_PREFIX '$prefix' cannot be used in the ACL (empty, or has # + & | \\)" >&2
        exit 2
        ;;
esac

umask 077
mkdir -p "$dir"
passwd_tmp="$dir/passwd.tmp"
rm -f "$passwd_tmp"
first=yes
for entry in $users; do
    user=${entry%%:*}
    password=${entry#*:}
    if [ "$user" = "$entry" ] || [ -z "$user" ] || [ -z "$password" ]; then
        echo "broker: EDGEHIVE_BROKER_USERS entry '$user' is not user:password" >&2
        exit 2
    fi
    case "$password" in
        change-me*) echo "broker: WARNING: account '$user' still has its published default password; set EDGEHIVE_BROKER_USERS (docs/DEPLOY.md)" >&2 ;;
    esac
    # -c creates the file for the first account; the others are added to it.
    if [ "$first" = yes ]; then
        mosquitto_passwd -c -b "$passwd_tmp" "$user" "$password"
        first=no
    else
        mosquitto_passwd -b "$passwd_tmp" "$user" "$password"
    fi
done
mv "$passwd_tmp" "$dir/passwd"

sed "s|edgehive/v1/|$prefix/|g" "$template" > "$dir/acl.tmp"
mv "$dir/acl.tmp" "$dir/acl"

# Mosquitto reads both files after dropping root privileges to its own user.
if [ "$(id -u)" = 0 ] && id mosquitto > /dev/null 2>&1; then
    chown mosquitto "$dir/passwd" "$dir/acl"
fi
