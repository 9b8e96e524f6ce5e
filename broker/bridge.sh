#!/bin/sh
# broker/bridge.sh: print the Mosquitto bridge that joins this site's broker to a hub broker.
#
# A site is a broker with its own coordinator, agents, cameras and sensors; it keeps working
# when its link to the hub is down. The bridge carries up to the hub, under
# {prefix}/sites/{site}/, what people at the hub watch (results, job states, the coordinator's
# status and stats, node status and capabilities, errors), and carries down from the hub the
# jobs submitted there for this site ({prefix}/sites/{site}/jobs/submit → {prefix}/jobs/submit);
# a job this site hands up goes on hub/submit, and its states and result come back down from
# {prefix}/sites/{site}/handed/.
# The session is persistent on both sides (cleansession false): what is published while the
# link is down waits, QoS 1, and crosses once it is back. {prefix}/sites/{site}/bridge at the
# hub says `1` while the link is up and `0` once it dropped (retained).
#
# Settings (environment):
#   EDGEHIVE_HUB_ADDRESS   host[:port] of the hub broker (empty: no bridge, nothing printed)
#   EDGEHIVE_SITE          this site's id, a topic level (letters, digits, '_', '.', '-')
#   EDGEHIVE_HUB_USER      the account at the hub (default: the site id; role `site` there)
#   EDGEHIVE_HUB_PASSWORD  its password (empty: none)
#   EDGEHIVE_HUB_CAFILE    CA file for TLS to the hub (empty: plain MQTT)
#   EDGEHIVE_PREFIX        topic prefix, the same at the site and the hub (default edgehive/v1)
# The broker image writes its output to /mosquitto/config/conf.d/bridge.conf at every start
# (broker/prepare.sh); tests run this same script.
set -eu

address=${EDGEHIVE_HUB_ADDRESS:-}
[ -n "$address" ] || exit 0
site=${EDGEHIVE_SITE:-}
case "$site" in
    "" | *[!A-Za-z0-9_.-]*)
        echo "broker: EDGEHIVE_SITE '$site' must be set, letters, digits, '_', '.' or '-' (it is a topic level at the hub)" >&2
        exit 2
        ;;
esac
case "$address" in
    *[!A-Za-z0-9_.:-]* | :* | *:)
        echo "broker: EDGEHIVE_HUB_ADDRESS '$address' must be host or host:port" >&2
        exit 2
        ;;
esac
host=${address%:*}
port=1883
if [ "$host" != "$address" ]; then
    port=${address##*:}
    case "$port" in
        "" | *[!0-9]*)
            echo "broker: EDGEHIVE_HUB_ADDRESS '$address' has no valid port" >&2
            exit 2
            ;;
    esac
fi
prefix=${EDGEHIVE_PREFIX:-edgehive/v1}
prefix=${prefix#/}
prefix=${prefix%/}
user=${EDGEHIVE_HUB_USER:-$site}
local_prefix="$prefix/"
remote_prefix="$prefix/sites/$site/"

cat <<EOF
# The bridge of site $site to the hub at $host:$port (broker/bridge.sh; regenerated at every start).
connection edgehive-site-$site
address $host:$port
bridge_protocol_version mqttv311
try_private true
cleansession false
local_clientid edgehive-bridge-$site-local
remote_clientid edgehive-bridge-$site
remote_username $user
keepalive_interval 15
restart_timeout 2 30
notifications true
notification_topic ${remote_prefix}bridge
EOF
if [ -n "${EDGEHIVE_HUB_PASSWORD:-}" ]; then
    printf 'remote_password %s\n' "$EDGEHIVE_HUB_PASSWORD"
fi
if [ -n "${EDGEHIVE_HUB_CAFILE:-}" ]; then
    printf 'bridge_cafile %s\n' "$EDGEHIVE_HUB_CAFILE"
fi
# Up to the hub: what people there watch, and jobs handed up (the coordinator's hand_up). Down
# from the hub: jobs for this site.
for topic in "results/# out 1" "jobs/+/state out 1" "coordinator/# out 1" "nodes/+/status out 1" \
             "nodes/+/capabilities out 1" "errors out 0" "hub/submit out 1" "jobs/submit in 1"; do
    printf 'topic %s %s %s\n' "$topic" "$local_prefix" "$remote_prefix"
done
# Down: the states and results of the jobs this site handed up, as the router at the hub relays
# them, onto this site's own topics (where their submitter waits).
for topic in "jobs/+/state in 1" "results/# in 1"; do
    printf 'topic %s %s %shanded/\n' "$topic" "$local_prefix" "$remote_prefix"
done
