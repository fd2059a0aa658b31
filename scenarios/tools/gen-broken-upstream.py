#!/usr/bin/env python3
"""Writes scenarios/broken-upstream/*.yaml: one scenario per way upstream A can be
broken, under the default policy and under --strict-order. Run from that folder.
The files are committed; this script only keeps the sixteen of them consistent."""
import textwrap

TOPO = """hosts:
  switch:
    links: { p1: l1, p2: l2, p3: l3 }
    bridges: { br0: [p1, p2, p3] }
  client:
    links: { eth0: l1 }
    addresses: { eth0: [172.16.99.21/24] }
  node:
    links: { eth0: l2 }
    addresses: { eth0: [172.16.99.5/24] }
  dns:
    links: { eth0: l3 }
    addresses: { eth0: [172.16.99.11/24, 172.16.99.12/24] }
upstreams:
  A: { host: dns, address: 172.16.99.11, behaviour: BEHAVIOUR, zone: { ZONE } }
  B: { host: dns, address: 172.16.99.12, behaviour: delay 20ms, zone: { ZONE } }
forwarder:
  host: node
  address: 172.16.99.5
  options: [--no-resolv, --server=172.16.99.11, --server=172.16.99.12, --log-queries, --cache-size=0POLICY]
"""
ZONE = "ocp36-lb.example.com: { A: 172.16.99.20, TTL: 60 }"
BIG = ", big.example.com: { TXT: [" + ", ".join('"' + c * 200 + '"' for c in "abcdefgh") + "] }"

MODES = {
    "silent": ("silent", "A reads every query and never answers (packets vanish).", "did not answer"),
    "refused": ("refused", "A answers REFUSED to everything.", "is REFUSED"),
    "servfail": ("servfail", "A answers SERVFAIL to everything.", "is SERVFAIL"),
    "slow": ("delay 3s", "A answers correctly, but only after 3 s.", "did not answer"),
    "garbage": ("garbage", "A answers with bytes that are not a DNS message.", "malformed"),
    "wrong-id": ("wrong-id", "A answers with the wrong message ID (as an off-path spoofer would).", "did not answer"),
    "truncated-tcp-reset": ("truncate reset", "A sets TC on every UDP answer, and resets every TCP connection.", "truncated"),
    "recovering": ("silent", "A is silent for the first 2 s, then healthy again.", "did not answer"),
}

# dnsmasq 2.90's outcome per (mode, policy), as seen here. B answers 20 ms after A,
# so that dnsmasq's first race (every server at once) is always won by A's reply.
# Each entry: (declaration, first-query expectation, load expectation, A-not-demoted)
TIMEOUT = '{ timeout: true, symptom: "the client\'s query times out" }'
DNSMASQ = {
    ("silent", "strict"): ("with --strict-order and a silent first server, clients time out",
                           TIMEOUT, None, False),
    ("recovering", "strict"): ("with --strict-order and a silent first server, clients time out",
                               TIMEOUT, None, False),
    ("slow", "strict"): ("with --strict-order, every client waits for the slow first server (3 s)",
                         '{ answer: 172.16.99.20, after: 2.9s, symptom: "the answer comes from A after 3 s" }',
                         None, False),
    ("wrong-id", "strict"): ("with --strict-order and a first server whose replies never match, clients time out",
                             TIMEOUT, None, False),
    ("garbage", "strict"): ("with --strict-order and a first server answering garbage, clients time out",
                            TIMEOUT, None, False),
    ("refused", "strict"): ("with --strict-order, every query is sent to the refusing first server again", None, None, True),
    ("servfail", "strict"): ("with --strict-order, every query is sent to the failing first server again", None, None, True),
    ("servfail", "default"): ("A's SERVFAIL wins the first race; dnsmasq then prefers A and passes its SERVFAIL on to every client",
                              '{ rcode: SERVFAIL, symptom: "A\'s SERVFAIL reaches the client" }',
                              '{ min-failed: 75, symptom: "every query gets A\'s SERVFAIL" }', False),
    ("truncated-tcp-reset", "default"): ("passes A's truncated reply on to the client (TC set, no answer)",
                                         '{ truncated: true, symptom: "TC reaches the client" }',
                                         '{ min-failed: 75, symptom: "every answer is truncated" }', False),
    ("truncated-tcp-reset", "strict"): ("passes A's truncated reply on to the client (TC set, no answer), every time",
                                        '{ truncated: true, symptom: "TC reaches the client" }', None, False),
}


def scenario(mode, policy):
    beh, desc, why = MODES[mode]
    strict = policy == "strict"
    zone = ZONE + (BIG if mode.startswith("truncated") else "")
    y = f"name: upstream A {mode.replace('-', ' ')}, B healthy, under {'--strict-order' if strict else 'the default policy'}\n"
    y += "incident: broken-upstream\n"
    story = (f"Two upstreams for the node's forwarder, A listed first. {desc} B answers "
             f"after 20 ms. A client asks a steady stream of queries (the cache off, so that "
             f"every query goes upstream). Every answer must be right and within the "
             f"client-latency bound; A must be demoted quickly and then see only probes"
             + (", and get traffic again once it recovers." if mode == "recovering" else "."))
    y += "story: |\n" + textwrap.indent(textwrap.fill(story, 76), "  ") + "\n"
    y += TOPO.replace("BEHAVIOUR", beh).replace("ZONE", zone).replace("POLICY", ", --strict-order" if strict else "")
    d = DNSMASQ.get((mode, policy))
    y += "subjects:\n  ours: passes\n"
    if mode.startswith("truncated"):
        y += ('  dnsmasq: "skip: whether dnsmasq passes A\'s truncated reply on to the client differs from run '
              'to run here (TC reaches the client in some runs, in others it does not), so no outcome can be declared"\n')
        d = None
    else:
        y += f'  dnsmasq: "fails: {d[0]}"\n' if d else "  dnsmasq: passes\n"
    y += "steps:\n"
    y += "  - query: { from: client, to: 172.16.99.5, name: ocp36-lb.example.com, timeout: 5s }\n"
    y += f"    expect: {{ answer: 172.16.99.20, within: {'2s' if mode == 'slow' else '1.5s'} }}\n"
    if d and d[1]:
        y += f"    expect-dnsmasq: {d[1]}\n"
    if mode == "recovering":
        y += "  - id: load\n    background: true\n    load:"
    else:
        y += "  - load:"
    y += " { from: client, to: 172.16.99.5, names: [ocp36-lb.example.com], rate: 20, duration: 4s, timeout: 5s }\n"
    y += f"    expect: {{ answer: 172.16.99.20, within: {'2s' if mode == 'slow' else '1.5s'}, max-failed: 0 }}\n"
    if d and d[2]:
        y += f"    expect-dnsmasq: {d[2]}\n"
    elif d and not d[3]:
        # dnsmasq takes a repeated question as the client's retry and sends it to every
        # server, so how many load queries fail varies from run to run: the first query
        # above carries its declared symptom.
        y += "    only: [ours]\n"
    if mode == "recovering":
        y += "  - at: 2s\n    id: healed\n    behaviour: { upstream: A, set: answer }\n"
        y += "  - wait: load\n"
        if strict:
            y += "  - upstream-saw: { upstream: A, name: ocp36-lb.example.com, since: healed, min: 5, within: 10s, report: A back in use after recovery }\n"
        else:
            y += "  - upstream-saw: { upstream: A, since: healed, min: 1, within: 10s, report: A asked again after recovery }\n"
        if d:
            y += "    only: [ours]\n"
    else:
        # Demoted: from 1 s to the end of the load, A sees only probes.
        y += "  - upstream-saw: { upstream: A, since: 1s, max: 6 }\n"
        if d:
            y += "    only: [ours]\n"
        if d and d[3]:
            y += "  - upstream-saw: { upstream: A, since: 1s, min: 40 }\n    only: [dnsmasq]\n"
        y += "  - upstream-saw: { upstream: B, name: ocp36-lb.example.com, min: 70 }\n"
        if d:
            y += "    only: [ours]\n"
    if mode.startswith("truncated"):
        y += "  - query: { from: client, to: 172.16.99.5, name: big.example.com, type: TXT, transport: tcp, timeout: 5s }\n"
        y += "    expect: { rcode: NOERROR, within: 1.5s }\n"
    y += f'  - log: {{ contains: "{why}" }}\n    only: [ours]\n'
    return y


for mode in MODES:
    for policy in ("default", "strict"):
        name = f"{mode}-strict.yaml" if policy == "strict" else f"{mode}.yaml"
        with open(name, "w") as f:
            f.write(scenario(mode, policy))
