// libFuzzer target for the DNSWire codec. Built by ci/fuzz together with
// Sources/DNSWire/*.swift (no package target: `swift build` never sees it).
//
// Properties checked (a violation traps, which libFuzzer reports as a crash):
//  - decoding never crashes; a decoded message re-encodes (compressed and not)
//    to bytes that decode to an equal message, and re-encoding that is stable;
//  - encode(maxSize:) never exceeds maxSize unless only the header is left,
//    and its output decodes;
//  - QuickQuestion agrees with the full decoder on the header fields, and
//    canonicalQuestionKey stays inside the buffer.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzCodec(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    let buf = UnsafeRawBufferPointer(start: data, count: size)
    let bytes = Array(buf)

    let quick = try? QuickQuestion(parsing: buf)
    if let q = quick {
        precondition(q.nameEnd <= size && q.questionEnd <= size && q.questionEnd == q.nameEnd + 4)
        let key = canonicalQuestionKey(buf, q)
        precondition(key.count == q.nameEnd - 12 + 4)
        for b in key.dropLast(4) { precondition(!(b >= 0x41 && b <= 0x5A)) }
    }

    guard let msg = try? Message(decoding: bytes) else { return 0 }
    _ = try? Message(decoding: buf, allowTrailingBytes: true)
    if let q = quick {
        precondition(q.id == msg.header.id && q.flags == msg.header.flags)
        precondition(!msg.questions.isEmpty)
        precondition(msg.questions[0].type.rawValue == q.type && msg.questions[0].klass == q.klass)
    }

    for compress in [true, false] {
        let enc = msg.encode(compress: compress)
        guard let again = try? Message(decoding: enc) else {
            fatalError("re-decode failed (compress \(compress)): \(enc)")
        }
        precondition(again == msg, "round trip changed the message (compress \(compress))")
        precondition(again.encode(compress: compress) == enc, "re-encoding is not stable")
    }

    // maxSize from the first two bytes, so the fuzzer steers it.
    let maxSize = size >= 2 ? Int(bytes[0]) << 4 | Int(bytes[1] & 0x0F) : 512
    let (small, truncated) = msg.encode(maxSize: maxSize)
    precondition(small.count <= max(maxSize, 12), "encode(maxSize: \(maxSize)) gave \(small.count) bytes")
    guard let cut = try? Message(decoding: small) else {
        fatalError("encode(maxSize: \(maxSize)) output does not decode")
    }
    precondition(cut.header.truncated == (truncated || msg.header.truncated))
    precondition(cut.header.id == msg.header.id)
    return 0
}
