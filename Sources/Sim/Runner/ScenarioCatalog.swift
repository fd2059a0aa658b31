import Foundation

/// Finds scenario files: each path is a file, or a folder searched recursively
/// for `*.yaml` / `*.yml`, in a stable (sorted) order.
public enum ScenarioCatalog {
    public static func find(paths: [String]) throws -> [String] {
        var out: [String] = []
        let fm = FileManager.default
        for p in paths {
            var isDir: ObjCBool = false
            guard fm.fileExists(atPath: p, isDirectory: &isDir) else {
                throw ScenarioError(file: p, line: 0, reason: "no such file or folder")
            }
            if !isDir.boolValue { out.append(p); continue }
            guard let e = fm.enumerator(atPath: p) else { continue }
            var found: [String] = []
            for case let rel as String in e where rel.hasSuffix(".yaml") || rel.hasSuffix(".yml") {
                found.append((p as NSString).appendingPathComponent(rel))
            }
            out += found.sorted()
        }
        return out
    }
}
