// libFuzzer target for the scenario parser (Sources/Sim/Scenario/ScenarioParser.swift).
// Built by ci/fuzz against the Sim module (and Yams) from a sanitized `swift build`.
// Input: the text of a scenario file (invalid UTF-8 is replaced, as a reader would).
// Any ScenarioError is fine (it must name a line inside the text); a crash, hang,
// runaway allocation, or an error of another type is not.
import Sim

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzScenario(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    let text = String(decoding: UnsafeBufferPointer(start: data, count: size), as: UTF8.self)
    do {
        _ = try ScenarioParser.parse(text, file: "scenarios/fuzz/input.yaml")
    } catch let e as ScenarioError {
        precondition(e.line >= 0, "ScenarioError with line \(e.line)")
    } catch {
        fatalError("scenario parser threw something other than a ScenarioError: \(error)")
    }
    return 0
}
