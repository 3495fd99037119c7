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
}
