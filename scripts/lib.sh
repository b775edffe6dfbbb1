# Shell functions the scripts share; sourced, never run. The caller defines
# `die` (and `log`).

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
