#!/usr/bin/env bash
# pg_cluster.sh start|stop|down|up DIR: a throwaway PostgreSQL cluster for
# the tests.
#
# The cluster lives in DIR/data and listens only on a Unix socket in DIR
# (no TCP port). As root it runs as Debian's unprivileged `postgres` account,
# since PostgreSQL refuses to run as root. `stop` removes DIR; `down` and
# `up` stop and start the server keeping its data (for tests of a database
# outage). Superuser: postgres. Conninfo: host=DIR port=5432 user=postgres.
set -euo pipefail
cmd=${1:?start|stop}
dir=${2:?directory}
bindir=$(pg_config --bindir 2>/dev/null || true)
if [ ! -x "$bindir/initdb" ]; then
    bindir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1)
fi

as_owner() {
    if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

server_start() {
    as_owner "$bindir/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w \
        -o "-c listen_addresses='' -c unix_socket_directories='$dir' \
            -c max_connections=200 -c fsync=on" start >/dev/null ||
        { cat "$dir/server.log"; exit 1; }
}

case "$cmd" in
start)
    if [ -f "$dir/data/postmaster.pid" ]; then
        as_owner "$bindir/pg_ctl" -D "$dir/data" -m immediate stop \
            >/dev/null 2>&1 || true
    fi
    rm -rf "$dir"
    mkdir -p "$dir"
    chmod 700 "$dir"
    [ "$(id -u)" = 0 ] && chown postgres: "$dir"
    as_owner "$bindir/initdb" -D "$dir/data" -A trust -U postgres \
        --no-sync -E UTF8 --locale=C >"$dir/initdb.log" 2>&1 ||
        { cat "$dir/initdb.log"; exit 1; }
    server_start
    # Tests connect as the unprivileged cluster owner, over the socket.
    chmod 755 "$dir"
    echo "test cluster up: host=$dir"
    ;;
stop)
    if [ -d "$dir/data" ]; then
        as_owner "$bindir/pg_ctl" -D "$dir/data" -m fast stop >/dev/null \
            2>&1 || true
    fi
    rm -rf "$dir"
    ;;
down)
    as_owner "$bindir/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null
    ;;
up)
    server_start
    ;;
*)
    echo "usage: pg_cluster.sh start|stop|down|up DIR" >&2
    exit 2 ;;
esac
