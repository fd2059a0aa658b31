import Glibc

/// Makes a socket like socket(2). The runner passes one that creates the
/// socket inside a host's network namespace; tests use `loopbackSocketFactory`.
/// Actors never create namespaces themselves.
public typealias SocketFactory = (_ domain: Int32, _ type: Int32, _ proto: Int32) throws -> Int32

/// Plain socket(2) in the current namespace.
public let loopbackSocketFactory: SocketFactory = { domain, type, proto in
    let fd = socket(domain, type, proto)
    if fd < 0 {
        throw ActorError.errno("socket(\(domain), \(type), \(proto))")
    }
    return fd
}

/// Small socket helpers shared by the actors.
enum ActorSocket {
    static let udp = Int32(SOCK_DGRAM.rawValue)
    static let tcp = Int32(SOCK_STREAM.rawValue)

    /// A socket from the factory, non-blocking and close-on-exec.
    static func open(_ factory: SocketFactory, _ family: Endpoint.Family, _ type: Int32) throws -> Int32 {
        let fd = try factory(family == .v4 ? AF_INET : AF_INET6, type, 0)
        let flags = fcntl(fd, F_GETFL)
        _ = fcntl(fd, F_SETFL, flags | O_NONBLOCK)
        _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
        return fd
    }

    static func setOption(_ fd: Int32, _ level: Int32, _ name: Int32, _ value: Int32) {
        var v = value
        _ = setsockopt(fd, level, name, &v, socklen_t(MemoryLayout<Int32>.size))
    }

    static func bind(_ fd: Int32, _ ep: Endpoint, _ what: String) throws {
        let rc = ep.withSockaddr { Glibc.bind(fd, $0, $1) }
        if rc != 0 { throw ActorError.errno("bind \(ep) (\(what))") }
    }

    static func localEndpoint(_ fd: Int32) -> Endpoint? {
        var storage = sockaddr_storage()
        var len = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let rc = withUnsafeMutablePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) }
        }
        return rc == 0 ? Endpoint(storage: storage) : nil
    }

    /// sendto(2); returns 0 or the errno.
    @discardableResult
    static func send(_ fd: Int32, _ bytes: [UInt8], to ep: Endpoint) -> Int32 {
        let n = bytes.withUnsafeBytes { buf in
            ep.withSockaddr { sendto(fd, buf.baseAddress, buf.count, Int32(MSG_NOSIGNAL), $0, $1) }
        }
        return n < 0 ? errno : 0
    }

    /// sendmsg(2) with an IP_PKTINFO / IPV6_PKTINFO control message that sets
    /// the datagram's source address to `source`. Returns 0 or the errno.
    @discardableResult
    static func send(_ fd: Int32, _ bytes: [UInt8], to ep: Endpoint, from source: Endpoint) -> Int32 {
        guard source.family == ep.family else { return EAFNOSUPPORT }
        let headerSize = MemoryLayout<cmsghdr>.size          // 16 on 64-bit Linux, already aligned
        let dataLen = source.family == .v4 ? MemoryLayout<in_pktinfo>.size : 20   // in6_pktinfo: addr + ifindex
        let space = headerSize + (dataLen + 7) & ~7
        var control = [UInt8](repeating: 0, count: space)
        control.withUnsafeMutableBytes { c in
            var h = cmsghdr()
            h.cmsg_len = headerSize + dataLen
            if source.family == .v4 {
                h.cmsg_level = Int32(IPPROTO_IP)
                h.cmsg_type = Int32(IP_PKTINFO)
                var info = in_pktinfo()
                inet_pton(AF_INET, source.ip, &info.ipi_spec_dst)
                withUnsafeBytes(of: &info) { c.baseAddress!.advanced(by: headerSize).copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
            } else {
                h.cmsg_level = Int32(IPPROTO_IPV6)
                h.cmsg_type = Int32(IPV6_PKTINFO)
                let addr = source.addressBytes   // ipi6_addr, then ipi6_ifindex = 0
                c.baseAddress!.advanced(by: headerSize).copyMemory(from: addr, byteCount: 16)
            }
            withUnsafeBytes(of: &h) { c.baseAddress!.copyMemory(from: $0.baseAddress!, byteCount: headerSize) }
        }
        var payload = bytes
        let n: Int = payload.withUnsafeMutableBytes { pbuf in
            control.withUnsafeMutableBytes { cbuf in
                ep.withSockaddr { sa, salen in
                    var iov = iovec(iov_base: pbuf.baseAddress, iov_len: pbuf.count)
                    return withUnsafeMutablePointer(to: &iov) { iovp in
                        var msg = msghdr()
                        msg.msg_name = UnsafeMutableRawPointer(mutating: sa)
                        msg.msg_namelen = salen
                        msg.msg_iov = iovp
                        msg.msg_iovlen = 1
                        msg.msg_control = cbuf.baseAddress
                        msg.msg_controllen = cbuf.count
                        return sendmsg(fd, &msg, Int32(MSG_NOSIGNAL))
                    }
                }
            }
        }
        return n < 0 ? errno : 0
    }

    /// recvfrom(2) into `buffer`; returns (length, source) or (-errno, nil).
    static func receive(_ fd: Int32, _ buffer: inout [UInt8]) -> (Int, Endpoint?) {
        var storage = sockaddr_storage()
        var len = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let n = buffer.withUnsafeMutableBytes { buf in
            withUnsafeMutablePointer(to: &storage) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    recvfrom(fd, buf.baseAddress, buf.count, 0, $0, &len)
                }
            }
        }
        if n < 0 { return (-Int(errno), nil) }
        return (n, Endpoint(storage: storage))
    }

    /// One entry of a socket's error queue (IP_RECVERR): an ICMP error about
    /// a datagram this socket sent.
    struct QueuedError {
        /// Where the datagram that bounced was going.
        var destination: Endpoint?
        /// The host that sent the ICMP error.
        var reporter: Endpoint?
        var errno: Int32
        /// 2 = ICMP, 3 = ICMPv6, others local.
        var origin: UInt8
        var type: UInt8
        var code: UInt8
    }

    /// Asks the kernel to queue ICMP errors for this UDP socket (IP_RECVERR / IPV6_RECVERR).
    static func enableErrorQueue(_ fd: Int32, _ family: Endpoint.Family) {
        if family == .v4 {
            setOption(fd, Int32(IPPROTO_IP), IP_RECVERR, 1)
        } else {
            setOption(fd, Int32(IPPROTO_IPV6), IPV6_RECVERR, 1)
        }
    }

    /// Reads one entry of the error queue; nil when it is empty.
    static func readErrorQueue(_ fd: Int32) -> QueuedError? {
        var storage = sockaddr_storage()
        var control = [UInt8](repeating: 0, count: 512)
        var payload = [UInt8](repeating: 0, count: 512)
        let (n, controlLen): (Int, Int) = payload.withUnsafeMutableBytes { pbuf in
            control.withUnsafeMutableBytes { cbuf in
                withUnsafeMutablePointer(to: &storage) { sp in
                    var iov = iovec(iov_base: pbuf.baseAddress, iov_len: pbuf.count)
                    return withUnsafeMutablePointer(to: &iov) { iovp in
                        var msg = msghdr()
                        msg.msg_name = UnsafeMutableRawPointer(sp)
                        msg.msg_namelen = socklen_t(MemoryLayout<sockaddr_storage>.size)
                        msg.msg_iov = iovp
                        msg.msg_iovlen = 1
                        msg.msg_control = cbuf.baseAddress
                        msg.msg_controllen = cbuf.count
                        let n = recvmsg(fd, &msg, Int32(MSG_ERRQUEUE) | Int32(MSG_DONTWAIT))
                        return (n, Int(msg.msg_controllen))
                    }
                }
            }
        }
        guard n >= 0 else { return nil }
        var result = QueuedError(destination: Endpoint(storage: storage), reporter: nil, errno: 0, origin: 0, type: 0, code: 0)
        // Walk the control messages (64-bit Linux layout: 16-byte header, 8-byte alignment).
        let headerSize = MemoryLayout<cmsghdr>.size
        var offset = 0
        while offset + headerSize <= controlLen {
            let h = control.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: offset, as: cmsghdr.self) }
            let len = Int(h.cmsg_len)
            guard len >= headerSize, offset + len <= controlLen else { break }
            let isV4 = h.cmsg_level == Int32(IPPROTO_IP) && h.cmsg_type == IP_RECVERR
            let isV6 = h.cmsg_level == Int32(IPPROTO_IPV6) && h.cmsg_type == IPV6_RECVERR
            if (isV4 || isV6) && len >= headerSize + 16 {
                let d = offset + headerSize
                // struct sock_extended_err { u32 ee_errno; u8 ee_origin, ee_type, ee_code, ee_pad; u32 ee_info, ee_data; }
                result.errno = control.withUnsafeBytes { Int32(bitPattern: $0.loadUnaligned(fromByteOffset: d, as: UInt32.self)) }
                result.origin = control[d + 4]
                result.type = control[d + 5]
                result.code = control[d + 6]
                // SO_EE_OFFENDER: a sockaddr right after the struct.
                let sa = d + 16
                let room = offset + len - sa
                if room >= MemoryLayout<sa_family_t>.size {
                    var off = sockaddr_storage()
                    withUnsafeMutableBytes(of: &off) { dst in
                        control.withUnsafeBytes { src in
                            dst.copyMemory(from: UnsafeRawBufferPointer(rebasing: src[sa..<(sa + min(room, dst.count))]))
                        }
                    }
                    result.reporter = Endpoint(storage: off)
                }
            }
            offset += (len + 7) & ~7
        }
        return result
    }

    /// Polls one fd until `deadline` (SimClock.monotonic scale). Returns the
    /// revents, or 0 on timeout.
    static func wait(_ fd: Int32, _ events: Int16, until deadline: Double) -> Int16 {
        while true {
            let remaining = deadline - SimClock.monotonic()
            if remaining <= 0 { return 0 }
            var p = pollfd(fd: fd, events: events, revents: 0)
            let rc = poll(&p, 1, Int32(min(remaining * 1000, 3_600_000).rounded(.up)))
            if rc > 0 { return p.revents }
            if rc < 0 && errno != EINTR { return Int16(POLLERR) }
        }
    }

    /// Closes with SO_LINGER 0, so the peer gets a TCP RST.
    static func reset(_ fd: Int32) {
        var l = linger(l_onoff: 1, l_linger: 0)
        _ = setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, socklen_t(MemoryLayout<linger>.size))
        close(fd)
    }
}
