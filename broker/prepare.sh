#!/bin/sh
# broker/prepare.sh CONFIG_DIR [ACL_TEMPLATE [ACCOUNTS_DIR]]
#
# Writes the two files Mosquitto's auth needs (and a site's bridge, below), every time the broker starts (so changing a
# balena variable is all it takes to change a password) and whenever `edgehive-account` changes
# an account:
#   CONFIG_DIR/passwd  one account per `user:password[:role[:id+id...]]` in EDGEHIVE_BROKER_USERS
#                      (comma- or space-separated; a password cannot contain ',', ' ' or ':'),
#                      hashed by mosquitto_passwd, then the accounts added with edgehive-account
#                      (ACCOUNTS_DIR/passwd, already hashed)
#   CONFIG_DIR/acl     ACL_TEMPLATE (default: broker/acl beside this script) with its prefix
#                      edgehive/v1 rewritten to EDGEHIVE_PREFIX and one `user` section per account,
#                      rendered from the template's block for the account's role
# Roles: coordinator, sink, agent, camera, sensor, client, site (a site's bridge, at a hub). An account without one is
# `coordinator` or `sink` when so named, else `client` (the least: it may only submit jobs).
# ACCOUNTS_DIR/accounts holds `name role [id...]` lines, written by broker/account.sh.
# The broker image runs it from its entrypoint; the tests run this same script.
set -eu

if [ "$#" -lt 1 ]; then
    echo "usage: prepare.sh CONFIG_DIR [ACL_TEMPLATE [ACCOUNTS_DIR]]" >&2
    exit 64
fi
dir=$1
template=${2:-$(dirname "$0")/acl}
accounts_dir=${3:-}

users=$(printf '%s' "${EDGEHIVE_BROKER_USERS:-}" | tr ',' ' ')
if [ -z "$(printf '%s' "$users" | tr -d ' ')" ]; then
    echo "broker: EDGEHIVE_BROKER_USERS is empty; set it to 'coordinator:PASSWORD sink:PASSWORD' and one account per device (docs/DEPLOY.md)" >&2
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

# An account name is a topic level (a node, camera or sensor id): letters, digits, '_', '.', '-'.
check_name() {
    case "$1" in
        "" | *[!A-Za-z0-9_.-]*)
            echo "broker: account name '$1' must be letters, digits, '_', '.' or '-' (it is a topic level)" >&2
            exit 2
            ;;
    esac
    if [ "${#1}" -gt 64 ]; then
        echo "broker: account name '$1' is longer than 64 characters" >&2
        exit 2
    fi
}

check_role() {
    if ! grep -q "^role $1\$" "$template"; then
        echo "broker: account '$2' has unknown role '$1' (roles: $(sed -n 's/^role //p' "$template" | tr '\n' ' '))" >&2
        exit 2
    fi
}

umask 077
mkdir -p "$dir"
passwd_tmp="$dir/passwd.tmp"
acl_tmp="$dir/acl.tmp"
rm -f "$passwd_tmp"
: > "$passwd_tmp"
# The lines for every account, then one section per account.
awk '/^role /{ exit } { print }' "$template" > "$acl_tmp"

# add_acl NAME ROLE [ID...]: the role's block, %u as the name and then as each further id.
add_acl() {
    name=$1
    role=$2
    shift 2
    printf '\n# %s (%s)\nuser %s\n' "$name" "$role" "$name" >> "$acl_tmp"
    awk -v role="$role" -v ids="$name $*" '
        /^role / { current = $2; next }
        current != role || !/^topic / { next }
        index($0, "%u") == 0 { print; next }
        { n = split(ids, id, " "); for (i = 1; i <= n; i++) { line = $0; gsub(/%u/, id[i], line); print line } }
    ' "$template" >> "$acl_tmp"
}

seen=" "
for entry in $users; do
    IFS=: read -r user password role ids <<EOF
$entry
EOF
    if [ "$user" = "$entry" ] || [ -z "$user" ] || [ -z "$password" ]; then
        echo "broker: EDGEHIVE_BROKER_USERS entry '$user' is not user:password[:role[:id+id...]]" >&2
        exit 2
    fi
    check_name "$user"
    case "$user" in
        coordinator | sink) role=${role:-$user} ;;
        *) role=${role:-client} ;;
    esac
    check_role "$role" "$user"
    ids=$(printf '%s' "${ids:-}" | tr '+' ' ')
    for id in $ids; do check_name "$id"; done
    case "$password" in
        change-me*) echo "broker: WARNING: account '$user' still has its published default password; set EDGEHIVE_BROKER_USERS (docs/DEPLOY.md)" >&2 ;;
    esac
    mosquitto_passwd -b "$passwd_tmp" "$user" "$password"
    # shellcheck disable=SC2086  # ids are words
    add_acl "$user" "$role" $ids
    seen="$seen$user "
done

# Accounts added with edgehive-account (kept in the broker's data volume).
if [ -n "$accounts_dir" ] && [ -f "$accounts_dir/accounts" ]; then
    while read -r user role ids; do
        [ -n "$user" ] || continue
        case "$seen" in
            *" $user "*)
                echo "broker: account '$user' of $accounts_dir/accounts is also in EDGEHIVE_BROKER_USERS, which wins" >&2
                continue
                ;;
        esac
        check_name "$user"
        check_role "$role" "$user"
        if ! awk -F: -v u="$user" '$1 == u { print; found = 1 } END { exit !found }' "$accounts_dir/passwd" >> "$passwd_tmp"; then
            echo "broker: account '$user' has no password in $accounts_dir/passwd; skipped" >&2
            continue
        fi
        # shellcheck disable=SC2086  # ids are words
        add_acl "$user" "$role" $ids
        seen="$seen$user "
    done < "$accounts_dir/accounts"
fi

sed "s|edgehive/v1/|$prefix/|g" "$acl_tmp" > "$dir/acl.new"
rm -f "$acl_tmp"
mv "$passwd_tmp" "$dir/passwd"
mv "$dir/acl.new" "$dir/acl"

# Mosquitto reads both files after dropping root privileges to its own user.


# A site's bridge to its hub (broker/bridge.sh; none unless EDGEHIVE_HUB_ADDRESS is set), in the
# folder mosquitto.conf includes last.
mkdir -p "$dir/conf.d"
bridge_tmp="$dir/conf.d/bridge.conf.tmp"
sh "$(dirname "$0")/bridge.sh" > "$bridge_tmp"
if [ -s "$bridge_tmp" ]; then
    mv "$bridge_tmp" "$dir/conf.d/bridge.conf"
else
    rm -f "$bridge_tmp" "$dir/conf.d/bridge.conf"
fi

# Mosquitto reads these files after dropping root privileges to its own user.
if [ "$(id -u)" = 0 ] && id mosquitto > /dev/null 2>&1; then
    chown mosquitto "$dir/passwd" "$dir/acl" "$dir/conf.d"
    [ ! -f "$dir/conf.d/bridge.conf" ] || chown mosquitto "$dir/conf.d/bridge.conf"
fi
