/// A value that crosses a task boundary although its type is not `Sendable`: a pointer to a core
/// object whose functions are documented as callable from any thread (an `hd_consumed_t` batch).
struct UnsafeTransfer<Value>: @unchecked Sendable {
  let value: Value
}
