#!/usr/bin/env bash
# Installs what building and testing Faultline needs on a fresh Debian machine, and nothing when it is
# already there. Runs as root (CI and the dev machines are root); uses only Debian's and PyPI's registries.
set -euo pipefail

need=()
# containerd, runc, the CNI plugins and busybox: the real node (e2e/node.py) and its toolbox image; dig: DNS
# over TCP with AD set, for the DNS kernel test; Redis, PostgreSQL, MariaDB and RabbitMQ servers and
# clients, and Java and Maven for Kafka's broker (e2e/build-kafka.sh): the backend dissectors' kernel tests.
for pair in tshark:tshark tcpdump:tcpdump ip:iproute2 iptables:iptables ip6tables:iptables ping:iputils-ping openssl:openssl chromium:chromium tcpreplay:tcpreplay containerd:containerd runc:runc busybox:busybox-static dig:bind9-dnsutils ipset:ipset redis-server:redis-server redis-cli:redis-tools mariadbd:mariadb-server mariadb:mariadb-client rabbitmqctl:rabbitmq-server java:default-jre-headless mvn:maven; do
    cmd=${pair%%:*}
    pkg=${pair#*:}
    command -v "$cmd" >/dev/null 2>&1 || need+=("$pkg")
done
[ -e /usr/include/pcap.h ] || need+=(libpcap-dev)
[ -x /usr/lib/cni/bridge ] || need+=(containernetworking-plugins)
ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || need+=(postgresql)
command -v psql >/dev/null 2>&1 || need+=(postgresql-client)
# A static C library for the pod sandbox image (images/pause.c).
[ -e /usr/lib/x86_64-linux-gnu/libc.a ] || need+=(libc6-dev)
[ -x /usr/bin/time ] || need+=(time)
[ -d /usr/share/fonts/truetype/dejavu ] || need+=(fonts-dejavu-core)
if [ ${#need[@]} -gt 0 ]; then
    echo "installing: ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
# chromium + playwright: the dashboard's browser test drives Debian's Chromium (no browser download).
# grpcio and h2: real gRPC and HTTP/2 peers for the HTTP/2 dissector's kernel test; redis, pg8000 and
# pymysql, pika, confluent-kafka (librdkafka): client libraries (their exceptions are ground truth) for the
# backend kernel tests; mcp (the official MCP SDK, 1.x: protocol 2025-06-18/11-25) as an assistant's side.
for mod in pytest:pytest yaml:pyyaml cryptography:cryptography playwright:playwright==1.65.2 grpc:grpcio h2:h2 redis:redis pg8000:pg8000 pymysql:pymysql pika:pika confluent_kafka:confluent-kafka mcp:mcp==1.27.0; do
    python3 -c "import ${mod%%:*}" 2>/dev/null || python3 -m pip install -q "${mod#*:}"
done
command -v cargo >/dev/null || { echo "cargo not found: install Rust (rustup) first" >&2; exit 1; }
command -v go >/dev/null || { echo "go not found: the e2e control plane is built from Go modules" >&2; exit 1; }
