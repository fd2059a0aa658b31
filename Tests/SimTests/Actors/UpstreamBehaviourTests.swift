import XCTest
@testable import Sim

final class UpstreamBehaviourTests: XCTestCase {
    func testTextRoundTrip() throws {
        let all: [UpstreamBehaviour] = [.answer, .delay(ms: 3000), .silent, .refused, .servfail, .nxdomain,
                                        .truncate(tcp: .answer), .truncate(tcp: .reset), .truncate(tcp: .hang),
                                        .wrongID, .wrongQuestion, .lowercaseQuestion, .garbage, .fromOtherAddress("127.0.0.2")]
        for b in all {
            XCTAssertEqual(try UpstreamBehaviour(parsing: b.description), b, b.description)
        }
    }

    func testAlternativeSpellings() throws {
        XCTAssertEqual(try UpstreamBehaviour(parsing: "delay 3s"), .delay(ms: 3000))
        XCTAssertEqual(try UpstreamBehaviour(parsing: "delay 250ms"), .delay(ms: 250))
        XCTAssertEqual(try UpstreamBehaviour(parsing: "truncate"), .truncate(tcp: .answer))
        XCTAssertEqual(try UpstreamBehaviour(parsing: "truncate reset"), .truncate(tcp: .reset))
        XCTAssertEqual(try UpstreamBehaviour(parsing: "wrongID"), .wrongID)
        XCTAssertEqual(try UpstreamBehaviour(parsing: "wrong_question"), .wrongQuestion)
        XCTAssertEqual(try UpstreamBehaviour(parsing: "SERVFAIL"), .servfail)
        XCTAssertEqual(try UpstreamBehaviour(parsing: "from-other-address fd00::2"), .fromOtherAddress("fd00::2"))
        XCTAssertEqual(try UpstreamBehaviour(parsing: "truncate(tcp: reset)"), .truncate(tcp: .reset))
        XCTAssertEqual(try UpstreamBehaviour(parsing: "delay: 300"), .delay(ms: 300))
        XCTAssertEqual(try UpstreamBehaviour(parsing: "delay(ms: 300)"), .delay(ms: 300))
    }

    func testBadTextIsRejectedWithAReason() {
        for bad in ["", "delay", "delay soon", "truncate tcp=maybe", "explode", "refused now", "from-other-address nowhere"] {
            XCTAssertThrowsError(try UpstreamBehaviour(parsing: bad), bad) { error in
                XCTAssertTrue("\(error)".contains("upstream behaviour"), "\(error)")
            }
        }
    }
}
