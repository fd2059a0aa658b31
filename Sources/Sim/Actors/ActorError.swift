import Glibc

/// An error from an actor's set-up (bad address, bind failure, unreadable file).
/// The message names what failed and why.
public struct ActorError: Error, Equatable, CustomStringConvertible {
    public var message: String

    public init(_ message: String) {
        self.message = message
    }

    /// `what`: "bind 127.0.0.1:53 (udp)" etc.; appends the errno text.
    static func errno(_ what: String, _ code: Int32 = Glibc.errno) -> ActorError {
        ActorError("\(what): \(String(cString: strerror(code)))")
    }

    public var description: String { message }
}
