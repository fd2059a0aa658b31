import textwrap
topo = """hosts:
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
  B: { host: dns, address: 172.16.99.12, zone: { ZONE } }
forwarder:
  host: node
  address: 172.16.99.5
  options: [--no-resolv, --server=172.16.99.11, --server=172.16.99.12, --log-queries, --cache-size=0POLICY]
"""
zone = "ocp36-lb.example.com: { A: 172.16.99.20, TTL: 60 }, big.example.com: { TXT: [BIG] }"
modes = {
  "silent":   ("silent", "A reads every query and never answers (packets vanish).",
               "did not answer"),
  "refused":  ("refused", "A answers REFUSED to everything.", "is REFUSED"),
  "servfail": ("servfail", "A answers SERVFAIL to everything.", "is SERVFAIL"),
  "slow":     ("delay 3s", "A answers correctly, but only after 3 s.", "did not answer"),
  "garbage":  ("garbage", "A answers with bytes that are not a DNS message.", ""),
  "wrong-id": ("wrong-id", "A answers with the wrong message ID (as an off-path spoofer would).", ""),
  "truncated-tcp-reset": ("truncate reset", "A sets TC on every UDP answer, and resets every TCP connection.", ""),
  "recovering": ("silent", "A is silent for the first 2 s, then healthy again.", "did not answer"),
}
dnsmasq_decl = {
  # strict-order + silent first server: dnsmasq leaves clients to time out.
  ("silent", "strict"): ("fails: with --strict-order and a silent first server, clients time out", "timeout"),
  ("slow", "strict"): ("fails: with --strict-order and a first server slower than the client, clients time out", "timeout"),
  ("recovering", "strict"): ("fails: with --strict-order and a silent first server, clients time out", "timeout"),
}
for mode, (beh, desc, why) in modes.items():
  for policy in ("default", "strict"):
    opts = "" if policy == "default" else ", --strict-order"
    fname = f"{mode}-{policy}.yaml" if policy == "strict" else f"{mode}.yaml"
    pdesc = "the default policy" if policy == "default" else "--strict-order"
    big = ", ".join(['"' + c*200 + '"' for c in "abcdefgh"])
    y = f"name: upstream A {mode.replace('-', ' ')}, B healthy, under {pdesc}\n"
    y += "incident: broken-upstream\n"
    y += "story: |\n" + textwrap.indent(textwrap.fill(
      f"Two upstreams for the node's forwarder, A listed first. {desc} "
      f"A client asks a steady stream of names (TTL 60, the cache off so that every "
      f"query goes upstream). Every answer must be right and within the client-latency bound; "
      f"A must be demoted quickly and then see only probes" +
      (", and get traffic again once it recovers." if mode == "recovering" else "."), 76), "  ") + "\n"
    z = zone.replace("BIG", big) if mode.startswith("truncated") else zone.split(", big.")[0]
    y += topo.replace("BEHAVIOUR", beh).replace("ZONE", z).replace("POLICY", opts)
    decl = dnsmasq_decl.get((mode, policy))
    y += "subjects:\n  ours: passes\n"
    y += f"  dnsmasq: \"{decl[0]}\"\n" if decl else "  dnsmasq: passes\n"
    y += "steps:\n"
    # the first query: answered from B within the bound even while A is broken.
    y += "  - query: { from: client, to: 172.16.99.5, name: ocp36-lb.example.com, timeout: 5s }\n"
    if mode == "slow":
      y += "    expect: { answer: 172.16.99.20, within: 2s }\n"
    else:
      y += "    expect: { answer: 172.16.99.20, within: 1.5s }\n"
    if decl:
      y += f"    expect-dnsmasq: {{ timeout: true, symptom: \"the client's query times out\" }}\n"
    if mode == "recovering":
      y += "  - id: load\n    background: true\n"
    y += "  - load: { from: client, to: 172.16.99.5, names: [ocp36-lb.example.com], rate: 20, duration: 4s, timeout: 5s }\n"
    y += "    expect: { answer: 172.16.99.20, within: 1.5s, max-failed: 0 }\n" if mode != "slow" else "    expect: { answer: 172.16.99.20, within: 2s, max-failed: 0 }\n"
    if decl:
      y += "    expect-dnsmasq: { answer: 172.16.99.20, max-failed: 80, symptom: \"queries time out while A is first\" }\n"
    if mode == "recovering":
      y += "  - at: 2s\n    id: healed\n    behaviour: { upstream: A, set: answer }\n"
      y += "  - wait: load\n"
      if policy == "strict":
        y += "  - upstream-saw: { upstream: A, name: ocp36-lb.example.com, since: healed, min: 5, within: 10s, report: A back in use after recovery }\n"
      else:
        y += "  - upstream-saw: { upstream: A, since: healed, min: 1, within: 10s, report: A probed again after recovery }\n"
    else:
      # A is demoted: between 1 s and the end of the load it sees only probes.
      y += "  - upstream-saw: { upstream: A, since: 1s, max: 6 }\n"
      y += "  - upstream-saw: { upstream: B, name: ocp36-lb.example.com, min: 80 }\n"
    if mode == "truncated-tcp-reset":
      y += "  - query: { from: client, to: 172.16.99.5, name: big.example.com, type: TXT, transport: tcp, timeout: 5s }\n"
      y += "    expect: { rcode: NOERROR, within: 1.5s }\n"
    if why:
      y += f"  - log: {{ contains: \"{why}\" }}\n"
    open(fname, "w").write(y)
