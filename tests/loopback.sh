#!/bin/sh
# Run a command in a network namespace that has only loopback, where Ray (tests/service/
# test_cluster_ray.py) binds 127.0.0.1 instead of the machine's interface address, so the suite
# talks to 127.0.0.1 only. Needs root (CI runs as root); elsewhere the command runs as it is.
if [ "$(id -u)" = 0 ] && command -v unshare > /dev/null && command -v ip > /dev/null && unshare -n true 2> /dev/null; then
    exec unshare -n sh -c 'ip link set lo up && exec "$@"' sh "$@"
fi
exec "$@"
