import CSimSys
import Glibc

/// The outcome of `SimHost.runCommand`.
public struct CommandResult: CustomStringConvertible {
    /// Exit status, or 128 + signal.
    public var status: Int32
    public var stdout: String
    public var stderr: String
    /// stdout followed by stderr.
    public var output: String { stdout + stderr }
    public var description: String { "status \(status)\n\(output)" }
}

/// Runs a short command with pipes for stdin, stdout and stderr, all
/// driven by one poll loop (so a large output never dead-locks).
enum CommandRunner {
    static let ignoreSIGPIPE: Void = { _ = signal(SIGPIPE, SIG_IGN) }()

    static func pipePair() throws -> (r: Int32, w: Int32) {
        var fds: [Int32] = [-1, -1]
        let rc = simsys_pipe_cloexec(&fds)
        if rc != 0 { throw SimNetError.system("pipe2", "", errno: rc) }
        return (fds[0], fds[1])
    }

    static func run(host: SimHost, argv: [String], input: String?, env: [String: String],
                    timeout: Double) throws -> CommandResult {
        let out = try pipePair()
        let err: (r: Int32, w: Int32)
        do { err = try pipePair() } catch { close(out.r); close(out.w); throw error }
        var inp: (r: Int32, w: Int32) = (-1, -1)
        if input != nil {
            do { inp = try pipePair() } catch {
                [out.r, out.w, err.r, err.w].forEach { close($0) }
                throw error
            }
        }
        let child: ChildProcess
        do {
            child = try host.spawn(argv, env: env, stdinFD: inp.r, stdoutFD: out.w, stderrFD: err.w)
        } catch {
            [out.r, out.w, err.r, err.w, inp.r, inp.w].filter { $0 >= 0 }.forEach { close($0) }
            throw error
        }
        close(out.w); close(err.w)
        if inp.r >= 0 { close(inp.r) }

        // A child that exits without reading its input must not kill us
        // with SIGPIPE (children get default dispositions back before exec).
        CommandRunner.ignoreSIGPIPE
        var inBytes = Array((input ?? "").utf8)
        var inOff = 0
        var inFD = inp.w
        if inFD >= 0 {
            _ = fcntl(inFD, F_SETFL, fcntl(inFD, F_GETFL) | O_NONBLOCK)
            if inBytes.isEmpty { close(inFD); inFD = -1 }
        }
        var outFD = out.r, errFD = err.r
        var outBuf: [UInt8] = [], errBuf: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        let deadline = MonotonicClock.now + timeout
        var timedOut = false
        defer { [outFD, errFD, inFD].filter { $0 >= 0 }.forEach { close($0) } }

        while outFD >= 0 || errFD >= 0 || inFD >= 0 {
            let left = deadline - MonotonicClock.now
            if left <= 0 { timedOut = true; break }
            var fds: [pollfd] = []
            if outFD >= 0 { fds.append(pollfd(fd: outFD, events: Int16(POLLIN), revents: 0)) }
            if errFD >= 0 { fds.append(pollfd(fd: errFD, events: Int16(POLLIN), revents: 0)) }
            if inFD >= 0 { fds.append(pollfd(fd: inFD, events: Int16(POLLOUT), revents: 0)) }
            let n = poll(&fds, nfds_t(fds.count), Int32(min(left, 1.0) * 1000) + 1)
            if n < 0 {
                if errno == EINTR { continue }
                throw SimNetError.system("poll", "output of \(argv.first!)", errno: errno)
            }
            for p in fds where p.revents != 0 {
                if p.fd == inFD {
                    let w = inBytes.withUnsafeBytes { Glibc.write(inFD, $0.baseAddress! + inOff, $0.count - inOff) }
                    if w > 0 { inOff += w }
                    if (w < 0 && errno != EAGAIN && errno != EINTR) || inOff >= inBytes.count {
                        close(inFD); inFD = -1; inBytes = []
                    }
                } else {
                    let r = chunk.withUnsafeMutableBytes { Glibc.read(p.fd, $0.baseAddress, $0.count) }
                    if r > 0 {
                        if p.fd == outFD { outBuf += chunk[0..<r] } else { errBuf += chunk[0..<r] }
                    } else if r == 0 || (errno != EINTR && errno != EAGAIN) {
                        close(p.fd)
                        if p.fd == outFD { outFD = -1 } else { errFD = -1 }
                    }
                }
            }
        }
        let status: ExitStatus
        if timedOut {
            child.terminate(grace: 0.5)
            throw SimNetError.timeout("`\(argv.joined(separator: " "))` on host \(host.name) after \(timeout) s")
        }
        if let s = child.wait(timeout: max(0.001, deadline - MonotonicClock.now)) {
            status = s
        } else {
            child.terminate(grace: 0.5)
            throw SimNetError.timeout("`\(argv.joined(separator: " "))` on host \(host.name) after \(timeout) s")
        }
        return CommandResult(status: status.code,
                             stdout: String(decoding: outBuf, as: UTF8.self),
                             stderr: String(decoding: errBuf, as: UTF8.self))
    }
}
