/// A class instance the core holds as a `void *` (`user_data`, `cb_data`).
///
/// The C callbacks stay capture-free: each one finds its instance from the pointer it is given.
/// ``retainedPointer()`` retains the instance for the core; exactly one ``take(_:)`` or
/// ``release(_:)`` gives that retain back, from the callback that ends the core's use of the
/// pointer, or right after a call that failed and so never calls back. While the core holds the
/// pointer, a callback borrows the instance with ``unretained(_:)``.
protocol UnmanagedContext: AnyObject {}

extension UnmanagedContext {
  /// Retains the instance for the core and returns the pointer to hand it.
  func retainedPointer() -> UnsafeMutableRawPointer {
    Unmanaged.passRetained(self).toOpaque()
  }

  /// The instance behind `pointer`, still retained by the core (nil for a null pointer).
  static func unretained(_ pointer: UnsafeMutableRawPointer?) -> Self? {
    pointer.map { Unmanaged<Self>.fromOpaque($0).takeUnretainedValue() }
  }

  /// The instance behind `pointer`, with the retain the core held (nil for a null pointer).
  static func take(_ pointer: UnsafeMutableRawPointer?) -> Self? {
    pointer.map { Unmanaged<Self>.fromOpaque($0).takeRetainedValue() }
  }

  /// Gives back the retain the core held, without using the instance.
  static func release(_ pointer: UnsafeMutableRawPointer?) {
    if let pointer { Unmanaged<Self>.fromOpaque(pointer).release() }
  }
}
