// libFuzzer target for the forwarder's option parser (Sources/Forwarder/Options.swift).
// Built by ci/fuzz against the Forwarder module from a sanitized `swift build`.
//
// Input: MAIN [NUL INCLUDED]. The first byte picks the mode:
//  - even: MAIN (after the mode byte) is a config file, applied with applyConfigFile;
//  - odd:  MAIN's lines are a command line, given to Options.parse.
// Every conf-file=NAME reads INCLUDED (at most 16 reads per input, then an error,
// so a file that includes itself stays bounded). The resolv-file reader gets MAIN too.
// Any thrown error is fine; a crash, hang or runaway allocation is not.
import Forwarder

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOptions(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    guard size >= 1 else { return 0 }
    let bytes = UnsafeBufferPointer(start: data, count: size)
    let mode = bytes[0]
    let rest = bytes[1...]
    let cut = rest.firstIndex(of: 0) ?? rest.endIndex
    let main = String(decoding: rest[..<cut], as: UTF8.self)
    let included = cut < rest.endIndex ? String(decoding: rest[(cut + 1)...], as: UTF8.self) : ""
    var reads = 0
    let readFile: (String) throws -> String = { name in
        reads += 1
        guard reads <= 16 else { throw OptionError("fuzz: too many includes (\(name))") }
        return included
    }
    if mode & 1 == 0 {
        var o = Options()
        do {
            try o.applyConfigFile(text: main, path: "fuzz.conf", readFile: readFile)
        } catch let e as OptionError {
            precondition(!e.message.isEmpty, "an OptionError without a message")
        } catch {
            fatalError("config file: an error that is not an OptionError: \(error)")
        }
    } else {
        let args = main.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        do {
            _ = try Options.parse(args, readFile: readFile)
        } catch let e as OptionError {
            precondition(!e.message.isEmpty, "an OptionError without a message")
        } catch {
            fatalError("command line: an error that is not an OptionError: \(error)")
        }
    }
    _ = Options.parseResolvConf(main)
    return 0
}
