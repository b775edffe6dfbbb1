# Shell functions the scripts share; sourced, never run. The caller defines
# `die` (and `log`), and for wait_for START_TIMEOUT and RUN_DIR.

# Installs Debian packages (root only), updating the index once per run.
# Debian's postinst starts the services it installs (nginx on :80): a
# policy-rc.d answering 101 forbids that, as in containers.
apt_install() {
    [ "$(id -u)" = 0 ] || die "need root to install $* (or install it first)"
    if [ -z "${APT_UPDATED:-}" ]; then apt-get update -qq; APT_UPDATED=1; fi
    local guard=""
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        guard=1
    fi
    local rc=0
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null || rc=$?
    [ -n "$guard" ] && rm -f /usr/sbin/policy-rc.d
    return "$rc"
}

# wait_for NAME PID URL [any]: polls URL until it answers 200 (any HTTP
# status with `any`), failing early when PID exits.
wait_for() {
    local name=$1 pid=$2 url=$3 any=${4:-} code deadline=$((SECONDS + START_TIMEOUT))
    while [ "$SECONDS" -lt "$deadline" ]; do
        kill -0 "$pid" 2>/dev/null || die "$name exited during start-up (see $RUN_DIR)"
        code=$(curl -s -o /dev/null -m 2 -w '%{http_code}' "$url" || true)
        if [ "$code" = 200 ] || { [ -n "$any" ] && [ "$code" != 000 ]; }; then return 0; fi
        sleep 0.1
    done
    die "$name did not answer $url within ${START_TIMEOUT}s (see $RUN_DIR)"
}
