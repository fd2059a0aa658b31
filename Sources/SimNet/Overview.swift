// SimNet overview (kept as a comment so the target has no unhandled files).
//
// # SimNet: the test-bed's network layer
//
// Hosts are network namespaces held by file descriptors; links, bridges,
// addresses and routes are made through libnl (no `ip` process); firewall and
// NAT are nftables (`nft -f -` run inside the host); processes under test are
// forked from one long-lived spawner thread with `PR_SET_PDEATHSIG(SIGKILL)`.
//
// ```swift
// let net = Network()
// defer { net.teardown() }                       // kills processes, frees namespaces, unpins
// let a = try net.addHost("a"), r = try net.addHost("router"), b = try net.addHost("b")
// try net.connect(a, "eth0", r, "l0")            // veth pair, both ends up
// try net.connect(r, "r0", b, "eth0")
// try a.addAddress("172.17.0.3/16", dev: "eth0") // IPv6 gets IFA_F_NODAD
// try a.addRoute("default", via: "172.17.0.1")
// try r.enableForwarding()                       // ip_forward, ipv6 forwarding, rp_filter 0
// try r.applyNftables("table ip nat { chain p { type nat hook postrouting priority srcnat; oifname \"r0\" masquerade\n } }")
// let fd = try b.socket(domain: AF_INET, type: Int32(SOCK_DGRAM.rawValue))  // lives in b
// let p = try r.spawn(["dnsmasq", "-k"], cwd: dir, stdout: log, stderr: log)
// let out = try r.runCommand(["dig", "@172.17.0.1", "x.test"], timeout: 5)
// let trace = try r.startTrace()                 // needs a rule `meta nftrace set 1`
// trace.dropSummary()  // ["rule `udp dport 53 counter drop` (handle 7) in chain input of table inet filter on host router dropped 3 packets"]
// ```
//
// Facts worth knowing:
//
// - `setns` switches one thread only. `SimHost.run {}` runs a closure on a fresh
//   thread inside the namespace (the caller's threads never move); a socket
//   keeps the namespace it was created in.
// - Anything open inside a namespace holds it alive: the namespace fd, the
//   host's netlink socket (closed by `teardown`), and **sockets made with
//   `host.socket`: close them before or at teardown**, or the namespace (and
//   its veth pairs) outlives the scenario until the process exits.
// - Nothing is created in the caller's namespace: veth pairs are created in
//   one host and the peer is moved into the other (`rtnl_link_set_ns_fd`).
// - Processes: own process group; `terminate` and teardown send SIGTERM then
//   SIGKILL to the whole group. PDEATHSIG reaches direct children only; run
//   subjects in the foreground (`dnsmasq -k`, `unbound -d`), not daemonised.
// - `/proc/net/...` read via `readFile` is mapped to `/proc/thread-self/net/...`
//   (`/proc/self/net` would show the main thread's namespace).
// - `startTrace` returns only after `nft monitor trace` has joined the
//   NFNLGRP_NFTRACE netlink group (checked in `/proc/<pid>/net/netlink`), so no
//   event is missed.
// - `pin(as:)` bind-mounts the ns fd on `/run/netns/<name>` (making
//   `/run/netns` a shared mount like iproute2); `Pinned.removeAll(prefix:)`
//   undoes it. Pinning needs root of the initial user namespace.
// - `Rootless.reexecIfNeeded` (call first in `main`): as non-root, forks a
//   child that unshares a user + network namespace, maps uid/gid 0, and execs
//   `/proc/self/exe`; the parent waits, forwards SIGTERM/SIGHUP, ignores
//   SIGINT (the child gets it from the terminal) and exits with the child's
//   status. A refusal names `kernel.unprivileged_userns_clone`,
//   `user.max_user_namespaces` or `kernel.apparmor_restrict_unprivileged_userns`.
// - This kernel has no `sch_netem`, so link delay/loss is not offered.
