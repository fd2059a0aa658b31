#!/bin/bash
# Captures the DNS fixtures in this directory: real queries from dig and real
# replies from dnsmasq, through a small UDP relay that logs both as hex.
# Everything runs on 127.0.0.1 only; dnsmasq has no upstream servers.
# Two dnsmasq instances: a plain one (local records, port 5399 behind relay 5398)
# and one authoritative for z.test (port 5397 behind relay 5396), because
# dnsmasq's auth mode refuses everything else arriving on that interface.
# Usage: Tests/DNSWireTests/Fixtures/capture.sh   (needs dnsmasq, dig, python3)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT

# 12 TXT records for big.test: about 1 KB, more than 512 bytes.
big=()
for i in $(seq -w 1 12); do
    big+=("--txt-record=big.test,record $i of the big.test set: padding padding padding padding")
done
common=(--no-daemon --conf-file=/dev/null --pid-file= --no-resolv --no-hosts
        --listen-address=127.0.0.1 --bind-interfaces --user=root --local-ttl=300)

dnsmasq "${common[@]}" --port=5399 \
    --address=/a.test/192.0.2.1 --address=/nx.test/ \
    --host-record=h.test,192.0.2.7,2001:db8::7 --mx-host=m.test,mail.m.test,10 \
    --txt-record=t.test,"hello world" --srv-host=_sip._udp.s.test,sip.s.test,5060 \
    --cname=c.test,h.test "${big[@]}" 2>"$work/dnsmasq1.log" &
pids+=($!)
dnsmasq "${common[@]}" --port=5397 \
    --host-record=h.z.test,192.0.2.9 --auth-server=ns.z.test,lo --auth-zone=z.test \
    --auth-soa=2026112201,hostmaster.z.test,1200,120,604800,300 2>"$work/dnsmasq2.log" &
pids+=($!)

cat >"$work/relay.py" <<'PY'
import socket, sys
log = open(sys.argv[1], "a", buffering=1)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", int(sys.argv[2])))
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u.bind(("127.0.0.1", 0))
u.settimeout(2)
while True:
    q, client = s.recvfrom(65535)
    log.write("Q " + q.hex() + "\n")
    u.sendto(q, ("127.0.0.1", int(sys.argv[3])))
    try:
        r, _ = u.recvfrom(65535)
    except socket.timeout:
        continue
    log.write("R " + r.hex() + "\n")
    s.sendto(r, client)
PY
: >"$work/relay.log"
python3 "$work/relay.py" "$work/relay.log" 5398 5399 &
pids+=($!)
python3 "$work/relay.py" "$work/relay.log" 5396 5397 &
pids+=($!)
sleep 0.5   # let everything bind (a capture tool, not a test)

capture() {  # NAME PORT dig-args...
    local name=$1 port=$2; shift 2
    local before; before=$(wc -l <"$work/relay.log")
    dig @127.0.0.1 -p "$port" +tries=1 +time=3 "$@" >"$work/dig.out"
    tail -n +"$((before + 1))" "$work/relay.log" | grep '^Q ' | tail -1 | cut -c3- >"$here/$name-query.hex"
    tail -n +"$((before + 1))" "$work/relay.log" | grep '^R ' | tail -1 | cut -c3- >"$here/$name-reply.hex"
    echo "$name: $(grep -m1 'status:' "$work/dig.out" | sed 's/.*status: \([A-Z]*\).*/\1/')"
}

capture a            5398 a.test A
capture a-noedns     5398 a.test A +noedns
capture a-dnssec     5398 a.test A +dnssec
capture aaaa         5398 h.test AAAA
capture mx           5398 m.test MX
capture txt          5398 t.test TXT
capture srv          5398 _sip._udp.s.test SRV
capture cname        5398 c.test A
capture ptr          5398 -x 192.0.2.7
capture nxdomain     5398 nx.test A              # --address=/nx.test/: NXDOMAIN, no SOA
capture refused      5398 other.test A           # no upstream: REFUSED
capture big          5398 big.test TXT +ignore   # EDNS 1232: full answer
capture big-tc       5398 big.test TXT +noedns +ignore   # 512 bytes: truncated, TC set
capture nxdomain-soa 5396 nope.z.test A          # auth zone: NXDOMAIN with SOA in authority
capture nodata-soa   5396 h.z.test MX            # auth zone: NODATA with SOA in authority
