extension Duration {
  /// Whole milliseconds, clamped to `UInt32` (0 for a negative duration).
  var clampedMilliseconds: UInt32 {
    let (seconds, attoseconds) = components
    if seconds < 0 { return 0 }
    let ms = seconds.multipliedReportingOverflow(by: 1000)
    if ms.overflow { return UInt32.max }
    let total = ms.partialValue + attoseconds / 1_000_000_000_000_000
    return total > Int64(UInt32.max) ? UInt32.max : UInt32(total)
  }

  /// Whole milliseconds, clamped to `UInt64` (0 for a negative duration; `UInt64.max` past it).
  var clampedMilliseconds64: UInt64 {
    let (seconds, attoseconds) = components
    if seconds < 0 { return 0 }
    let ms = UInt64(seconds).multipliedReportingOverflow(by: 1000)
    if ms.overflow { return UInt64.max }
    let sum = ms.partialValue.addingReportingOverflow(UInt64(attoseconds / 1_000_000_000_000_000))
    return sum.overflow ? UInt64.max : sum.partialValue
  }
}
