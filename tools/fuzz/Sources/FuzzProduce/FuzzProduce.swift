import FjordFuzzSupport

// libFuzzer entry points; the binary's main is libFuzzer's (built with --sanitize=fuzzer).

@_cdecl("LLVMFuzzerInitialize")
public func initialize(_ argc: UnsafeMutablePointer<CInt>, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>) -> CInt {
    FuzzSeedWriter.writeIfAsked(target: "fuzz-produce")
    return 0
}

@_cdecl("LLVMFuzzerTestOneInput")
public func testOneInput(_ start: UnsafeRawPointer, _ count: Int) -> CInt {
    FuzzTargets.produce(UnsafeRawBufferPointer(start: start, count: count))
    return 0
}
