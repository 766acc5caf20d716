#!/usr/bin/env bash
# A throwaway single-node Ceph cluster with a RADOS Gateway, on loopback, for S3 tests.
#
#   scripts/s3-test-server.sh start DIR MON_PORT RGW_PORT
#   scripts/s3-test-server.sh stop DIR
#
# `start` builds a cluster in DIR (monitor, one memstore OSD, radosgw), waits until the
# gateway answers, creates S3 users with the fixed test keys below and prints the
# endpoint on stdout (progress goes to stderr). Nothing is written outside DIR and
# everything listens on 127.0.0.1 only. Authentication between the daemons is off: this
# cluster is for tests, never for data.
#
# `stop` kills every daemon `start` left in DIR and is safe to run any number of times.
#
# Needs (Debian/Ubuntu): apt-get install -y ceph-mon ceph-osd radosgw ceph-common
set -euo pipefail

ACCESS_KEY="STORYWORLDTESTACCESS"
SECRET_KEY="storyworld-test-secret-key-not-for-production"
# A second user, who owns nothing: tests use it for "no permission on this bucket".
OTHER_ACCESS_KEY="STORYWORLDTESTOTHER0"
OTHER_SECRET_KEY="storyworld-test-other-secret-not-for-production"
READY_TIMEOUT_S="${S3_TEST_SERVER_READY_TIMEOUT:-90}"

usage() {
    echo "usage: $0 start DIR MON_PORT RGW_PORT | stop DIR" >&2
    exit 2
}

log() { echo "s3-test-server: [${SECONDS}s] $*" >&2; }

# Report why start failed, with the end of the daemons' logs, and undo what was started.
fail() {
    log "start failed: $*"
    local f
    for f in "$DIR"/log/*; do
        [ -s "$f" ] || continue
        echo "--- $f (last 15 lines)" >&2
        tail -n 15 "$f" >&2
    done
    stop_cluster "$DIR"
    exit 4
}

# Kill the daemons whose pid files are in DIR/run and wait until they are gone. SIGKILL
# straight away: the cluster holds nothing worth saving, and a polite SIGTERM costs
# ~2 s per daemon.
stop_cluster() {
    local dir pidfile pid
    dir="$(cd "$1" 2>/dev/null && pwd)" || return 0
    [ -d "$dir/run" ] || return 0
    for pidfile in "$dir"/run/*.pid; do
        [ -e "$pidfile" ] || continue
        pid="$(cat "$pidfile" 2>/dev/null || true)"
        if [ -n "$pid" ] && is_ours "$pid" "$dir"; then
            kill -KILL "$pid" 2>/dev/null || true
            for _ in $(seq 100); do
                is_alive "$pid" || break
                sleep 0.05
            done
        fi
        rm -f "$pidfile"
    done
}

# True while process $1 exists and is not a zombie (a zombie holds no ports or files).
is_alive() {
    local state
    state="$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" || return 1
    [ -n "$state" ] && [ "$state" != Z ]
}

# True when $1 is a live daemon started with the config in DIR $2, so that a stale pid
# file never makes us kill an unrelated process that reused the pid.
is_ours() {
    is_alive "$1" && tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null | grep -qF -- "$2/conf"
}

# Run a command up to 5 times. Just after the monitor starts, a client's first command
# is sometimes refused ("wrong fsid", EPERM) before the monitor has settled; the
# commands retried here are idempotent.
retry() {
    local attempt
    for attempt in 1 2 3 4 5; do
        "$@" && return 0
        ((attempt < 5)) || return 1
        log "$1 failed; retrying"
        sleep 0.3
    done
}

# True when something answers HTTP on 127.0.0.1:$1 (no curl needed).
http_answers() {
    (
        exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
        printf 'GET / HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' >&3
        IFS= read -r -t 2 line <&3 || exit 1
        [[ "$line" == HTTP/* ]]
    ) 2>/dev/null
}

start_cluster() {
    local dir="$1" mon_port="$2" rgw_port="$3"
    for bin in ceph-mon ceph-osd radosgw radosgw-admin monmaptool ceph; do
        command -v "$bin" >/dev/null || {
            log "$bin not found; install: apt-get install -y ceph-mon ceph-osd radosgw ceph-common"
            exit 3
        }
    done
    mkdir -p "$dir"
    dir="$(cd "$dir" && pwd)"
    DIR="$dir"
    trap 'fail "command failed at line $LINENO"' ERR
    # A previous cluster in DIR would hold the ports; start from nothing.
    stop_cluster "$dir"
    rm -rf "${dir:?}"/{conf,monmap,mon,osd,rgw,run,log}
    mkdir -p "$dir"/{mon,osd,rgw,run,log}

    local fsid conf="$dir/conf"
    fsid="$(cat /proc/sys/kernel/random/uuid)"
    cat >"$conf" <<EOF
[global]
fsid = $fsid
mon host = v1:127.0.0.1:$mon_port
ms bind msgr2 = false
public addr = 127.0.0.1
auth cluster required = none
auth service required = none
auth client required = none
auth supported = none
osd objectstore = memstore
memstore device bytes = 2147483648
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
# The monitor batches map changes for 1 s by default; RGW creates its pools one after
# the other at first start, so this cuts the start from ~18 s to ~2 s.
paxos propose interval = 0.05
paxos min wait = 0.01
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
mon allow pool size one = true
mon allow pool delete = true
mon max pg per osd = 1000
mon data avail warn = 1
mon warn on pool no redundancy = false
osd crush chooseleaf type = 0
run dir = $dir/run
pid file = $dir/run/\$name.pid
admin socket = $dir/run/\$name.asok
log file = $dir/log/\$name.log
mon data = $dir/mon/\$name
osd data = $dir/osd/\$name
keyring = /dev/null
[client.rgw]
rgw frontends = beast endpoint=127.0.0.1:$rgw_port
rgw data = $dir/rgw
rgw enable usage log = false
# Deleted objects' data is garbage-collected after 2 h by default; in a memstore that
# fills the 2 GB device after a few GB of uploads and deletes, and writes then hang.
rgw gc obj min wait = 1
rgw gc processor period = 2
rgw dns name = 127.0.0.1
EOF

    log "creating monitor on 127.0.0.1:$mon_port"
    monmaptool --create --fsid "$fsid" --addv a "v1:127.0.0.1:$mon_port" "$dir/monmap" \
        >/dev/null
    ceph-mon -c "$conf" --mkfs -i a --monmap "$dir/monmap" >/dev/null
    ceph-mon -c "$conf" -i a

    log "creating memstore OSD"
    local osd_uuid osd_id
    osd_uuid="$(cat /proc/sys/kernel/random/uuid)"
    # `osd new` with the same uuid returns the same id, so it is safe to retry.
    osd_id="$(retry timeout 60 ceph -c "$conf" osd new "$osd_uuid")"
    mkdir -p "$dir/osd/osd.$osd_id"
    ceph-osd -c "$conf" -i "$osd_id" --mkfs --osd-uuid "$osd_uuid" >/dev/null \
        2>>"$dir/log/osd.stderr"
    # The OSD exits if its first command to the monitor is refused; start it again.
    retry ceph-osd -c "$conf" -i "$osd_id" 2>>"$dir/log/osd.stderr"

    log "starting radosgw on 127.0.0.1:$rgw_port"
    radosgw -c "$conf" -n client.rgw

    local deadline=$((SECONDS + READY_TIMEOUT_S))
    until http_answers "$rgw_port"; do
        ((SECONDS <= deadline)) || fail "radosgw did not answer within ${READY_TIMEOUT_S}s"
        sleep 0.2
    done

    timeout 60 radosgw-admin -c "$conf" -n client.admin user create --uid=storyworld-test \
        --display-name="StoryWorld tests" --access-key="$ACCESS_KEY" \
        --secret-key="$SECRET_KEY" >/dev/null
    timeout 60 radosgw-admin -c "$conf" -n client.admin user create --uid=storyworld-other \
        --display-name="StoryWorld tests, no rights" --access-key="$OTHER_ACCESS_KEY" \
        --secret-key="$OTHER_SECRET_KEY" >/dev/null
    trap - ERR
    log "ready"
    echo "http://127.0.0.1:$rgw_port"
}

case "${1:-}" in
    start)
        [ $# -eq 4 ] || usage
        start_cluster "$2" "$3" "$4"
        ;;
    stop)
        [ $# -eq 2 ] || usage
        stop_cluster "$2"
        ;;
    *) usage ;;
esac
