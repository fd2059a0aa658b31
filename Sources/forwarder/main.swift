#if canImport(Glibc)
import Glibc
#endif
import Forwarder

func fail(_ message: String, code: Int32) -> Never {
    let line = "forwarder: \(message)\n"
    _ = line.withCString { write(2, $0, strlen($0)) }
    exit(code)
}

let options: Options
do {
    options = try Options.parse(Array(CommandLine.arguments.dropFirst())) { path in
        guard let text = Daemon.readFile(path) else { throw OptionError("cannot read \(path)") }
        return text
    }
} catch let e as OptionError {
    fail("\(e.message) (see --help)", code: 2)
} catch {
    fail("\(error)", code: 2)
}
if options.help {
    print(Options.helpText(), terminator: "")
    exit(0)
}
if options.version {
    print("forwarder version \(Daemon.version)")
    exit(0)
}
let daemon = Daemon(options: options)
do {
    try daemon.start()
} catch {
    fail("\(error)", code: 3)
}
exit(daemon.run())
