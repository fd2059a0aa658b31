import CSimSys
import Glibc

/// Namespaces pinned under /run/netns (by `--keep`), and their removal (`sim clean`).
public enum Pinned {
    public static let directory = "/run/netns"

    /// Names under /run/netns that start with `prefix`, sorted.
    public static func list(prefix: String = "sim-") -> [String] {
        guard let dir = opendir(directory) else { return [] }
        defer { closedir(dir) }
        var names: [String] = []
        while let ent = readdir(dir) {
            let name = withUnsafePointer(to: ent.pointee.d_name) {
                $0.withMemoryRebound(to: CChar.self, capacity: 256) { String(cString: $0) }
            }
            if name != "." && name != ".." && name.hasPrefix(prefix) { names.append(name) }
        }
        return names.sorted()
    }

    /// Unmounts and deletes one pin.
    public static func remove(_ name: String) throws {
        let rc = simsys_netns_unpin(name)
        if rc != 0 { throw SimNetError.system("unpin", "\(directory)/\(name)", errno: rc) }
    }

    /// Unmounts and deletes every pin starting with `prefix`; returns the
    /// names removed. Throws the first failure after trying them all.
    @discardableResult
    public static func removeAll(prefix: String = "sim-") throws -> [String] {
        guard !prefix.isEmpty else {
            throw SimNetError.invalidArgument("Pinned.removeAll: an empty prefix would remove namespaces that are not ours")
        }
        let names = list(prefix: prefix)
        if !names.isEmpty && Rootless.isRootlessChild {
            throw SimNetError.invalidArgument("removing \(names.count) pinned namespace(s) under \(directory) (\(names.joined(separator: ", "))) needs root; run `sim clean` as root")
        }
        var removed: [String] = []
        var firstError: Error?
        for name in names {
            do { try remove(name); removed.append(name) } catch { firstError = firstError ?? error }
        }
        if let firstError { throw firstError }
        return removed
    }
}
