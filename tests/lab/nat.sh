#!/usr/bin/env bash
# The media relay's NAT laboratory: five network namespaces, nothing on the
# host's own network. `nat.sh up P` builds them (names start with P),
# `nat.sh down P` removes them.
#
#   P-c1  10.1.0.2 ── 10.1.0.1 P-nat1 198.51.100.2 ──┐
#                      (MASQUERADE: one mapping per    198.51.100.1
#                       inside address and port)            P-srv  (no forwarding)
#   P-c2  10.2.0.2 ── 10.2.0.1 P-nat2 203.0.113.2 ───┘ 203.0.113.1
#                      (MASQUERADE --random-fully: a new port for every
#                       destination, a symmetric NAT)
#   P-c3  192.0.2.50 ──────────────────────────────── 192.0.2.1 (link only)
#                      (an inside client at an address of its own, on a
#                       network of the server's, no NAT)
#
# The server's namespace does not forward, so the clients cannot reach
# each other directly: only through the relay on P-srv.
set -euo pipefail
cmd=$1
p=$2

ns() { ip netns exec "$p-$1" "${@:2}"; }

down() {
    for n in c1 c2 c3 nat1 nat2 srv; do
        ip netns del "$p-$n" 2>/dev/null || true
    done
}

if [ "$cmd" = down ]; then
    down
    exit 0
fi

down
for n in c1 c2 c3 nat1 nat2 srv; do
    ip netns add "$p-$n"
    ns "$n" ip link set lo up
done

link() { # link NS1 IF1 ADDR1 NS2 IF2 ADDR2
    ip link add "$2" netns "$p-$1" type veth peer name "$5" netns "$p-$4"
    ns "$1" ip addr add "$3" dev "$2"
    ns "$4" ip addr add "$6" dev "$5"
    ns "$1" ip link set "$2" up
    ns "$4" ip link set "$5" up
}

link srv s1 198.51.100.1/24 nat1 o1 198.51.100.2/24
link srv s2 203.0.113.1/24 nat2 o2 203.0.113.2/24
link nat1 i1 10.1.0.1/24 c1 e1 10.1.0.2/24
link nat2 i2 10.2.0.1/24 c2 e2 10.2.0.2/24
link srv s3 192.0.2.1/24 c3 e3 192.0.2.50/24
ns c3 ip route add default via 192.0.2.1

ns srv sysctl -qw net.ipv4.ip_forward=0
# The server is multi-homed: clients behind the second NAT reach
# 198.51.100.1 over its 203.0.113.1 link, whose own address the kernel
# would pick as the source of a reply from a socket bound to 0.0.0.0 —
# which the NAT drops as no answer to what it sent. The relay must answer
# from the address the client reached (a wildcard UDP listener binds each
# address), as a server with several addresses must.
for i in 1 2; do
    ns "nat$i" sysctl -qw net.ipv4.ip_forward=1
    ns "c$i" ip route add default via "10.$i.0.1"
done
ns nat1 ip route add default via 198.51.100.1
ns nat2 ip route add default via 203.0.113.1
ns nat1 iptables -t nat -A POSTROUTING -o o1 -j MASQUERADE
ns nat2 iptables -t nat -A POSTROUTING -o o2 -j MASQUERADE --random-fully
# Nothing reaches the inside unless it answers what the inside sent.
for i in 1 2; do
    ns "nat$i" iptables -A FORWARD -i "o$i" -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT
    ns "nat$i" iptables -A FORWARD -i "o$i" -j DROP
done
