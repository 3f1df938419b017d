#!/usr/bin/env bash
# Benchmark environment for issue 6 (benches/scale.rs): N health endpoints served on loopback by
# nginx, and Prometheus' blackbox_exporter to probe the same targets for comparison.
#
# Usage:
#   scripts/bench-env.sh up [N] [BASE_PORT]   start nginx on 127.0.0.1:BASE_PORT .. BASE_PORT+N-1
#                                             (GET /health -> 200 {"status":"ok"}), the same over
#                                             TLS on the TLS_TARGETS ports after those, and
#                                             blackbox_exporter on 127.0.0.1:9115
#   scripts/bench-env.sh down                 stop both (by their pid files); idempotent
#   scripts/bench-env.sh status               print the key=value lines; exit 1 unless both run
#
# Defaults: N=10000, BASE_PORT=20000. When BASE_PORT is NOT given and some port of
# 20000 .. 20000+N-1 is in use by a TCP socket (e.g. RabbitMQ's listener on 25672), the
# first free base below it (19000, 18000, ...) is used; an explicit BASE_PORT that collides fails.
# Read base_port= from the output rather than assuming it.
#
# stdout of `up` and `status` is only these lines, in this order (progress goes to stderr):
#   nginx_pid=<master pid>
#   nginx_workers=<comma-separated worker pids>
#   blackbox_pid=<pid>
#   base_port=<first port>
#   targets=<N>
#   blackbox_url=http://127.0.0.1:9115
#   tls_base_port=<first https port: base_port + N>
#   tls_targets=<TLS_TARGETS>
#   ca_file=<the PEM of the test CA that signed nginx's certificate (for 127.0.0.1)>
# A target's URL is http://127.0.0.1:<port>/health; blackbox probes it with
#   <blackbox_url>/probe?module=http_2xx&target=http://127.0.0.1:<port>/health
# (blackbox's http prober also accepts the target without "http://" and adds it); an https
# target is https://127.0.0.1:<tls port>/health, probed with module=https_2xx (which trusts
# ca_file). TLS listeners neither cache sessions nor issue tickets: every check and every probe
# pays a full handshake, as against a fleet of distinct servers.
#
# nginx runs with worker_processes 1, so its whole serving cost is one process whose CPU time
# (/proc/<worker pid>/stat utime+stime) is bounded by one core and can be measured; master as
# root, worker as www-data, no access log, error log in the state dir. Each listening socket takes
# one worker connection slot and one fd, so worker_connections = N + CONN_HEADROOM and the fd
# limit is raised to the hard limit (ulimit -n; worker_rlimit_nofile for the worker).
#
# Environment:
#   BENCH_STATE_DIR=/tmp/mcp-healthd-bench  configs, pid files, logs
#   BLACKBOX_PORT=9115                      blackbox_exporter's port on 127.0.0.1
#   CONN_HEADROOM=4096                      worker connections beyond the N listening sockets
#   READY_TIMEOUT=120                       seconds `up` waits for nginx and blackbox to answer
#   TLS_TARGETS=N/10                        https ports (a test CA and certificate, by openssl)
#   NO_INSTALL=1                            never apt-get install (fail if a binary is missing)
# Installing (Debian's nginx and prometheus-blackbox-exporter, only when missing) needs root and
# apt-get; the packages' own services are kept from starting (policy-rc.d) and disabled.
# All traffic is to 127.0.0.1 only.

set -euo pipefail

state_dir=${BENCH_STATE_DIR:-/tmp/mcp-healthd-bench}
blackbox_port=${BLACKBOX_PORT:-9115}
conn_headroom=${CONN_HEADROOM:-4096}
ready_timeout=${READY_TIMEOUT:-120}
tls_dir=$state_dir/tls
nginx_bin=/usr/sbin/nginx
blackbox_bin=/usr/bin/prometheus-blackbox-exporter
blackbox_url=http://127.0.0.1:$blackbox_port
default_n=10000
default_base=20000

nginx_conf=$state_dir/nginx.conf
nginx_pidfile=$state_dir/nginx.pid
nginx_errlog=$state_dir/nginx-error.log
blackbox_conf=$state_dir/blackbox.yml
blackbox_pidfile=$state_dir/blackbox.pid
blackbox_log=$state_dir/blackbox.log
env_file=$state_dir/env

export LC_ALL=C

say() { echo "bench-env: $*" >&2; }
die() { echo "bench-env: FAIL: $*" >&2; exit 1; }
now_ms() { date +%s%3N; }

is_uint() { [[ $1 =~ ^[0-9]+$ ]]; }

# pid_is PID BINARY: PID is a live process running BINARY (guards against a reused pid).
pid_is() {
    local pid=$1 bin=$2 exe
    is_uint "$pid" || return 1
    exe=$(readlink "/proc/$pid/exe" 2>/dev/null) || return 1
    [[ $exe == "$bin" || $exe == "$bin (deleted)" ]]
}

read_pidfile() {
    local f=$1 pid=
    if [[ -r $f ]]; then
        read -r pid <"$f" || true
    fi
    printf '%s' "$pid"
}

# Local ports (numbers) of TCP sockets that would keep nginx from binding them: listeners and
# connected sockets, on any address. TIME-WAIT is left out: those left by a previous nginx on its
# own ports do not block its SO_REUSEADDR bind (clients' TIME-WAIT sockets on ephemeral ports do,
# which is one reason to keep the range below the ephemeral range).
used_ports() {
    ss -tanH exclude time-wait | awk '{ n = split($4, a, ":"); print a[n] }' | sort -un
}

# Used ports within [first, last], one a line.
conflicts_in() {
    local first=$1 last=$2
    used_ports | awk -v f="$first" -v l="$last" '$1 >= f && $1 <= l'
}

# The low end of the kernel's ephemeral port range (clients' source ports).
ephemeral_low() {
    local low
    read -r low _ </proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || low=32768
    echo "$low"
}

worker_pids() {
    local master=$1
    ps -o pid= --ppid "$master" 2>/dev/null | awk '{ print $1 }' | paste -sd, -
}

# ---- installing --------------------------------------------------------------------------------
temp_policy=
cleanup_policy() {
    if [[ -n $temp_policy ]]; then
        rm -f "$temp_policy"
        temp_policy=
    fi
}

ensure_packages() {
    local missing=()
    [[ -x $nginx_bin ]] || missing+=(nginx)
    [[ -x $blackbox_bin ]] || missing+=(prometheus-blackbox-exporter)
    command -v wrk >/dev/null 2>&1 || missing+=(wrk)
    ((${#missing[@]} == 0)) && return 0
    [[ -z ${NO_INSTALL:-} ]] || die "missing ${missing[*]} (NO_INSTALL is set)"
    command -v apt-get >/dev/null 2>&1 || die "missing ${missing[*]} and there is no apt-get"
    [[ $(id -u) -eq 0 ]] || die "missing ${missing[*]}; run as root to install them"
    export DEBIAN_FRONTEND=noninteractive
    # Keep the packages' postinst from starting their services (invoke-rc.d honours policy-rc.d;
    # 101 = action forbidden). An existing policy-rc.d is left as it is.
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        temp_policy=/usr/sbin/policy-rc.d
        trap cleanup_policy EXIT
        printf '#!/bin/sh\n# temporary, from mcp-healthd scripts/bench-env.sh\nexit 101\n' >"$temp_policy"
        chmod 755 "$temp_policy"
    fi
    say "installing ${missing[*]} (apt-get)"
    apt-get update -qq >&2 || die "apt-get update failed"
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2 \
        || die "apt-get install ${missing[*]} failed"
    cleanup_policy
    [[ -x $nginx_bin ]] || die "$nginx_bin still missing after installing"
    [[ -x $blackbox_bin ]] || die "$blackbox_bin still missing after installing"
    command -v wrk >/dev/null 2>&1 || die "wrk still missing after installing"
    quiesce_services
}

# Stop and disable the system services the packages define, in case their postinst started them
# anyway (a systemd host, or no policy-rc.d). Only called right after installing them.
quiesce_services() {
    local svc pid
    for svc in nginx prometheus-blackbox-exporter; do
        if [[ $(ps -p 1 -o comm= 2>/dev/null) == systemd ]] && command -v systemctl >/dev/null; then
            systemctl disable --now "$svc" >/dev/null 2>&1 || true
        else
            if [[ -x /etc/init.d/$svc ]]; then
                "/etc/init.d/$svc" stop >/dev/null 2>&1 || true
            fi
            update-rc.d "$svc" disable >/dev/null 2>&1 || true
        fi
    done
    # Whatever is still running from these binaries now was started by the install: end it.
    for pid in $(ps -eo pid= | awk '{ print $1 }'); do
        if pid_is "$pid" "$nginx_bin" || pid_is "$pid" "$blackbox_bin"; then
            say "stopping $(readlink "/proc/$pid/exe") (pid $pid) started by the package install"
            kill "$pid" 2>/dev/null || true
        fi
    done
}

# ---- fd limit ----------------------------------------------------------------------------------
# Raises the soft fd limit of this shell (inherited by nginx's master and blackbox) to $1 if the
# hard limit allows (trying to raise the hard limit too), else to the hard limit.
raise_nofile() {
    local want=$1 hard
    hard=$(ulimit -Hn)
    if [[ $hard != unlimited ]] && ((hard < want)); then
        if ulimit -Hn "$want" 2>/dev/null; then
            hard=$want
        else
            say "the hard fd limit is $hard (wanted $want); using $hard"
        fi
    fi
    ulimit -Sn "$hard" || die "cannot raise the soft fd limit to $hard"
}

# ---- config ------------------------------------------------------------------------------------
# A test CA and a certificate for 127.0.0.1 it signed (P-256, 30 days), remade at every `up`.
make_certs() {
    command -v openssl >/dev/null 2>&1 || die "openssl is needed for the https targets"
    mkdir -p "$tls_dir"
    (
        cd "$tls_dir"
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 \
            -subj "/CN=mcp-healthd bench CA" -keyout ca.key -out ca.pem \
            -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign
        openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
            -subj "/CN=127.0.0.1" -keyout leaf.key -out leaf.csr
        printf '%s\n' subjectAltName=IP:127.0.0.1 basicConstraints=CA:FALSE \
            keyUsage=critical,digitalSignature extendedKeyUsage=serverAuth >leaf.ext
        openssl x509 -req -in leaf.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 30 \
            -extfile leaf.ext -out leaf.pem
        chmod 644 ca.pem leaf.pem
    ) >/dev/null 2>&1 || die "openssl could not make the test certificates in $tls_dir"
}

write_nginx_conf() {
    local n=$1 base=$2 worker_conns=$3 worker_nofile=$4 tls_n=$5 user=www-data
    id -u "$user" >/dev/null 2>&1 || user=root
    mkdir -p "$state_dir/tmp"
    {
        cat <<EOF
# Generated by mcp-healthd scripts/bench-env.sh up $n $base -- rewritten at every \`up\`.
# One worker, so nginx's serving CPU is one process, bounded by one core, and measurable.
daemon on;
master_process on;
worker_processes 1;
worker_rlimit_nofile $worker_nofile;
user $user;
pid $nginx_pidfile;
error_log $nginx_errlog warn;

events {
    # every listening socket takes one connection slot in the worker
    worker_connections $worker_conns;
}

http {
    access_log off;
    log_not_found off;
    server_tokens off;
    keepalive_timeout 0;
    default_type application/json;
    client_body_temp_path $state_dir/tmp/body;
    proxy_temp_path $state_dir/tmp/proxy;
    fastcgi_temp_path $state_dir/tmp/fastcgi;
    uwsgi_temp_path $state_dir/tmp/uwsgi;
    scgi_temp_path $state_dir/tmp/scgi;

    server {
EOF
        seq "$base" $((base + n - 1)) | sed 's/.*/        listen 127.0.0.1:&;/'
        if ((tls_n > 0)); then
            seq $((base + n)) $((base + n + tls_n - 1)) | sed 's/.*/        listen 127.0.0.1:& ssl;/'
            cat <<EOF
        ssl_certificate $tls_dir/leaf.pem;
        ssl_certificate_key $tls_dir/leaf.key;
        ssl_session_cache off;
        ssl_session_tickets off;
EOF
        fi
        cat <<'EOF'

        location = /health {
            return 200 '{"status":"ok"}';
        }
        location / {
            return 404;
        }
    }
}
EOF
    } >"$nginx_conf"
}

write_blackbox_conf() {
    cat >"$blackbox_conf" <<'EOF'
# Generated by mcp-healthd scripts/bench-env.sh -- rewritten at every `up`.
# Blackbox's http prober opens a new connection per probe (no keep-alive across probes).
modules:
  http_2xx:
    prober: http
    timeout: 900ms
    http:
      method: GET
      valid_status_codes: []   # empty = any 2xx
      preferred_ip_protocol: ip4
      ip_protocol_fallback: false
EOF
    cat >>"$blackbox_conf" <<EOF
  https_2xx:
    prober: http
    timeout: 900ms
    http:
      method: GET
      valid_status_codes: []
      preferred_ip_protocol: ip4
      ip_protocol_fallback: false
      tls_config:
        ca_file: $tls_dir/ca.pem
EOF
}

# ---- status ------------------------------------------------------------------------------------
# Prints the key=value lines and returns 0 when nginx and blackbox both run; 1 otherwise.
print_status() {
    local npid bpid workers base='' n='' tls_n=''
    npid=$(read_pidfile "$nginx_pidfile")
    bpid=$(read_pidfile "$blackbox_pidfile")
    pid_is "$npid" "$nginx_bin" || { say "nginx is not running"; return 1; }
    pid_is "$bpid" "$blackbox_bin" || { say "blackbox_exporter is not running"; return 1; }
    [[ -r $env_file ]] || { say "no $env_file"; return 1; }
    base=$(sed -n 's/^base_port=//p' "$env_file")
    n=$(sed -n 's/^targets=//p' "$env_file")
    tls_n=$(sed -n 's/^tls_targets=//p' "$env_file")
    workers=$(worker_pids "$npid")
    [[ -n $workers ]] || { say "nginx (pid $npid) has no worker"; return 1; }
    printf 'nginx_pid=%s\n' "$npid"
    printf 'nginx_workers=%s\n' "$workers"
    printf 'blackbox_pid=%s\n' "$bpid"
    printf 'base_port=%s\n' "$base"
    printf 'targets=%s\n' "$n"
    printf 'blackbox_url=%s\n' "$blackbox_url"
    printf 'tls_base_port=%s\n' $((base + n))
    printf 'tls_targets=%s\n' "${tls_n:-0}"
    printf 'ca_file=%s\n' "$tls_dir/ca.pem"
}

# ---- down --------------------------------------------------------------------------------------
# stop_pid PID NAME: TERM, wait up to 10 s, then KILL.
stop_pid() {
    local pid=$1 name=$2 bin=$3 i
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do
        pid_is "$pid" "$bin" || return 0
        sleep 0.1
    done
    say "$name (pid $pid) did not stop on TERM in 10 s: KILL"
    kill -KILL "$pid" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do
        pid_is "$pid" "$bin" || return 0
        sleep 0.1
    done
    die "$name (pid $pid) is still running"
}

cmd_down() {
    local bpid npid workers w
    bpid=$(read_pidfile "$blackbox_pidfile")
    if pid_is "$bpid" "$blackbox_bin"; then
        say "stopping blackbox_exporter (pid $bpid)"
        stop_pid "$bpid" blackbox_exporter "$blackbox_bin"
    else
        say "blackbox_exporter is not running"
    fi
    rm -f "$blackbox_pidfile"

    npid=$(read_pidfile "$nginx_pidfile")
    if pid_is "$npid" "$nginx_bin"; then
        workers=$(worker_pids "$npid")
        say "stopping nginx (master $npid, workers ${workers:-none})"
        stop_pid "$npid" nginx "$nginx_bin"
        # the master ends its workers; make sure none is left behind
        for w in ${workers//,/ }; do
            pid_is "$w" "$nginx_bin" && stop_pid "$w" "nginx worker" "$nginx_bin"
        done
    else
        say "nginx is not running"
    fi
    rm -f "$nginx_pidfile"
}

# ---- up ----------------------------------------------------------------------------------------
choose_base() {
    local n=$1 explicit=$2 base=$3 c eph_low b
    if [[ -n $explicit ]]; then
        c=$(conflicts_in "$base" $((base + n - 1)) | paste -sd, -)
        [[ -z $c ]] || die "ports already in use in $base..$((base + n - 1)): $c"
        eph_low=$(ephemeral_low)
        if ((base + n - 1 >= eph_low)); then
            say "WARNING: ports $base..$((base + n - 1)) overlap the ephemeral range" \
                "(from $eph_low): clients' sockets (TIME-WAIT too) can keep nginx from binding"
        fi
        echo "$base"
        return
    fi
    eph_low=$(ephemeral_low)
    for ((b = base; b >= 1024; b -= 1000)); do
        ((b + n - 1 <= 65535)) || continue
        # stay out of the ephemeral range unless the default itself is in it
        ((b == base || b + n - 1 < eph_low)) || continue
        c=$(conflicts_in "$b" $((b + n - 1)) | paste -sd, -)
        if [[ -z $c ]]; then
            echo "$b"
            return
        fi
        say "ports $b..$((b + n - 1)) collide with socket(s) on $c"
    done
    die "no free range of $n ports found at or below $base; pass BASE_PORT"
}

wait_ready() {
    local base=$1 n=$2 tls_n=$3 last total deadline body count
    last=$((base + n - 1))
    total=$((n + tls_n))
    deadline=$(($(date +%s) + ready_timeout))
    while :; do
        if curl -fsS --max-time 2 "http://127.0.0.1:$base/health" 2>/dev/null | grep -qx '{"status":"ok"}' \
            && curl -fsS --max-time 2 "http://127.0.0.1:$last/health" 2>/dev/null | grep -qx '{"status":"ok"}' \
            && { ((tls_n == 0)) || curl -fsS --max-time 2 --cacert "$tls_dir/ca.pem" \
                "https://127.0.0.1:$((base + total - 1))/health" 2>/dev/null | grep -qx '{"status":"ok"}'; }; then
            break
        fi
        (($(date +%s) < deadline)) || die "nginx does not answer on ports $base, $last and the last TLS port (see $nginx_errlog)"
        sleep 0.1
    done
    count=$(ss -ltnH "( sport >= :$base and sport <= :$((base + total - 1)) )" | grep -c '127\.0\.0\.1:' || true)
    ((count == total)) || die "nginx listens on $count of the $total ports $base..$((base + total - 1))"
    while :; do
        body=$(curl -fsS --max-time 3 \
            "$blackbox_url/probe?module=http_2xx&target=http://127.0.0.1:$base/health" 2>/dev/null || true)
        if grep -qx 'probe_success 1' <<<"$body"; then
            if ((tls_n == 0)); then
                break
            fi
            body=$(curl -fsS --max-time 3 \
                "$blackbox_url/probe?module=https_2xx&target=https://127.0.0.1:$((base + n))/health" 2>/dev/null || true)
            grep -qx 'probe_success 1' <<<"$body" && break
        fi
        (($(date +%s) < deadline)) || die "blackbox_exporter does not answer a probe with probe_success 1 (see $blackbox_log)"
        sleep 0.2
    done
}

cmd_up() {
    local n=${1:-$default_n} base_arg=${2:-} base t0 t1 t2 t3 npid bpid workers conns
    local worker_nofile limit i tls_n total
    if ! is_uint "$n" || ((n < 1)); then
        die "N must be a positive integer, got '$n'"
    fi
    tls_n=${TLS_TARGETS:-$((n / 10))}
    is_uint "$tls_n" || die "TLS_TARGETS must be an integer, got '$tls_n'"
    total=$((n + tls_n))
    [[ -z $base_arg ]] || is_uint "$base_arg" || die "BASE_PORT must be an integer, got '$base_arg'"
    ((${base_arg:-$default_base} + total - 1 <= 65535)) || die "ports would go past 65535"
    command -v curl >/dev/null 2>&1 || die "curl is needed"
    command -v ss >/dev/null 2>&1 || die "ss (iproute2) is needed"
    t0=$(now_ms)

    mkdir -p "$state_dir"
    # a previous environment (maybe with other parameters) is replaced
    if pid_is "$(read_pidfile "$nginx_pidfile")" "$nginx_bin" \
        || pid_is "$(read_pidfile "$blackbox_pidfile")" "$blackbox_bin"; then
        say "an environment is already up: stopping it first"
        cmd_down
    fi
    ensure_packages

    base=$(choose_base "$total" "$base_arg" "${base_arg:-$default_base}")
    [[ -z $(conflicts_in "$blackbox_port" "$blackbox_port") ]] \
        || die "port $blackbox_port (blackbox_exporter) is already listened on"

    # fds: the listening sockets + the client connections + logs/epoll/channels (256)
    conns=$((total + conn_headroom))
    raise_nofile $((conns + 256))
    limit=$(ulimit -Sn)
    if [[ $limit != unlimited ]] && ((conns + 256 > limit)); then
        conns=$((limit - 256))
        ((conns >= total + 1024)) \
            || die "$total ports need at least $((total + 1024 + 256)) file descriptors; the limit is $limit"
        say "worker_connections cut to $conns (headroom $((conns - total))) by the fd limit $limit"
    fi
    worker_nofile=$((conns + 256))
    say "nginx: $n ports 127.0.0.1:$base..$((base + n - 1)) and $tls_n TLS ports after them," \
        "worker_processes 1," \
        "worker_connections $conns, fd limit $(ulimit -Sn)"

    ((tls_n == 0)) || make_certs
    write_nginx_conf "$n" "$base" "$conns" "$worker_nofile" "$tls_n"
    write_blackbox_conf
    printf 'base_port=%s\ntargets=%s\ntls_targets=%s\n' "$base" "$n" "$tls_n" >"$env_file"
    t1=$(now_ms)

    rm -f "$nginx_pidfile"
    if ! "$nginx_bin" -p "$state_dir/" -c "$nginx_conf" -e "$nginx_errlog" 2>"$state_dir/nginx-start.err"; then
        say "nginx did not start: $(grep -c emerg "$state_dir/nginx-start.err") [emerg] line(s) in" \
            "$state_dir/nginx-start.err, first and last:"
        sed -n '1,3p' "$state_dir/nginx-start.err" >&2
        tail -n 2 "$state_dir/nginx-start.err" >&2
        die "nginx did not start"
    fi
    for ((i = 0; i < 300; i++)); do
        npid=$(read_pidfile "$nginx_pidfile")
        if pid_is "$npid" "$nginx_bin"; then
            workers=$(worker_pids "$npid")
            [[ -n $workers ]] && break
        fi
        sleep 0.1
    done
    if ! pid_is "$npid" "$nginx_bin" || [[ -z $workers ]]; then
        die "nginx did not come up (see $nginx_errlog)"
    fi
    t2=$(now_ms)
    say "nginx master $npid, worker(s) $workers: started in $((t2 - t1)) ms"

    # setsid: blackbox gets its own session and outlives this script (no SIGHUP, no job control)
    setsid "$blackbox_bin" \
        --config.file="$blackbox_conf" \
        --web.listen-address="127.0.0.1:$blackbox_port" \
        --log.level=warn \
        </dev/null >>"$blackbox_log" 2>&1 &
    bpid=$!
    echo "$bpid" >"$blackbox_pidfile"
    sleep 0.1
    pid_is "$bpid" "$blackbox_bin" || die "blackbox_exporter exited at once; see $blackbox_log"

    wait_ready "$base" "$n" "$tls_n"
    t3=$(now_ms)
    say "ready in $((t3 - t0)) ms (config $((t1 - t0)) ms, nginx $((t2 - t1)) ms, blackbox+checks $((t3 - t2)) ms)"
    print_status
}

case ${1:-} in
    up)
        shift
        (($# <= 2)) || die "usage: $0 up [N] [BASE_PORT]"
        cmd_up "$@"
        ;;
    down)
        cmd_down
        ;;
    status)
        print_status
        ;;
    *)
        echo "usage: $0 up [N] [BASE_PORT] | down | status" >&2
        exit 2
        ;;
esac
