import CSimSys
import Glibc

/// Runs closures on short-lived threads inside a network namespace.
///
/// `setns(CLONE_NEWNET)` switches only the calling thread, so every switch
/// happens on a fresh thread that ends afterwards: no thread of the caller's
/// pool is ever left in a foreign namespace.
enum Namespace {
    private final class Box {
        let body: () -> Void
        init(_ body: @escaping () -> Void) { self.body = body }
    }

    /// Calls `body` on a thread inside the namespace held by `fd`.
    static func run<T>(fd: Int32, name: String, _ body: () throws -> T) throws -> T {
        var result: Result<T, Error>?
        let rc: Int32 = withoutActuallyEscaping(body) { escaping in
            let box = Box { result = Result { try escaping() } }
            let ctx = Unmanaged.passRetained(box)
            defer { ctx.release() }
            return simsys_run_in_netns(fd, { raw in
                Unmanaged<Box>.fromOpaque(raw!).takeUnretainedValue().body()
            }, ctx.toOpaque())
        }
        if rc != 0 { throw SimNetError.system("setns", "into host \(name)", errno: rc) }
        return try result!.get()
    }

    /// A new anonymous network namespace; the returned fd holds it.
    static func create(name: String) throws -> Int32 {
        var fd: Int32 = -1
        let rc = simsys_netns_new(&fd)
        if rc != 0 {
            throw SimNetError.system("unshare(CLONE_NEWNET)", "for host \(name)", errno: rc)
        }
        return fd
    }
}

/// Small file helpers used from inside a namespace thread.
enum FileIO {
    static func write(_ path: String, _ text: String) throws {
        let fd = open(path, O_WRONLY | O_CLOEXEC)
        if fd < 0 { throw SimNetError.system("open", path, errno: errno) }
        defer { close(fd) }
        let bytes = Array(text.utf8)
        let n = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
        if n < 0 { throw SimNetError.system("write", path, errno: errno) }
        if n != bytes.count { throw SimNetError.system("write", path, errno: EIO) }
    }

    static func read(_ path: String) throws -> String {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        if fd < 0 { throw SimNetError.system("open", path, errno: errno) }
        defer { close(fd) }
        var out: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 16384)
        while true {
            let n = buf.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                throw SimNetError.system("read", path, errno: errno)
            }
            if n == 0 { break }
            out.append(contentsOf: buf[0..<n])
        }
        return String(decoding: out, as: UTF8.self)
    }
}

extension FileIO {
    /// Creates (or truncates) a file and writes `text`.
    static func writeNew(_ path: String, _ text: String) throws {
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        if fd < 0 { throw SimNetError.system("open", path, errno: errno) }
        close(fd)
        try write(path, text)
    }
}
