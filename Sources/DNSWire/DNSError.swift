/// A malformed packet, name or text. `offset` is the byte offset in the packet
/// (or in the UTF-8 text, for `.invalidText`) where the problem was found.
public struct DNSError: Error, Equatable, CustomStringConvertible {
    public enum Kind: Equatable {
        case truncated, pointerLoop, forwardPointer, badPointer,
             nameTooLong, labelTooLong, badLabelType, badRDataLength, tooManyRecords, trailingGarbage, invalidText
    }

    public var kind: Kind
    public var offset: Int

    public init(_ kind: Kind, offset: Int) {
        self.kind = kind
        self.offset = offset
    }

    public init(kind: Kind, offset: Int) {
        self.init(kind, offset: offset)
    }

    public var description: String {
        let what: String
        switch kind {
        case .truncated: what = "packet truncated"
        case .pointerLoop: what = "compression pointer loop"
        case .forwardPointer: what = "forward compression pointer"
        case .badPointer: what = "bad compression pointer"
        case .nameTooLong: what = "name longer than 255 bytes"
        case .labelTooLong: what = "label longer than 63 bytes"
        case .badLabelType: what = "unsupported label type"
        case .badRDataLength: what = "rdata does not match its type or length"
        case .tooManyRecords: what = "record counts exceed the packet size"
        case .trailingGarbage: what = "trailing bytes after the last record"
        case .invalidText: what = "invalid text"
        }
        return "DNS error: \(what) at offset \(offset)"
    }
}
