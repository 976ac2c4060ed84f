import Logging
import NIOCore
import Testing

@testable import FjordBroker

@Suite struct LogRateLimiterTests {
    @Test func letsABurstThroughPerKindThenCountsWhatItHeldBack() {
        let limiter = LogRateLimiter(burst: 3, interval: .seconds(10))
        let start = NIODeadline.uptimeNanoseconds(1_000_000_000)
        // The first three of a kind pass, reporting nothing held back.
        for _ in 0..<3 { #expect(limiter.admit("tls failed", now: start) == 0) }
        // The rest of the window is held back, per kind.
        for i in 0..<5 { #expect(limiter.admit("tls failed", now: start + .seconds(Int64(i))) == nil) }
        #expect(limiter.admit("bad frame", now: start + .seconds(1)) == 0)
        // A new window lets messages through again; the first says how many were held back.
        #expect(limiter.admit("tls failed", now: start + .seconds(10)) == 5)
        #expect(limiter.admit("tls failed", now: start + .seconds(10)) == 0)
    }

    @Test func messagesBelowTheLoggersLevelDoNotSpendTheBudget() {
        let limiter = LogRateLimiter(burst: 1, interval: .seconds(60))
        var quiet = Logger(label: "test.quiet")
        quiet.logLevel = .error
        for _ in 0..<10 { limiter.log(quiet, .info, "connection failed") }
        #expect(limiter.admit("connection failed") == 0)
    }
}
