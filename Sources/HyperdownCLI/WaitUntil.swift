/// Polls `condition` every 10 ms until it holds; throws `CLIError(what)` after `timeout`.
func waitUntil(_ what: String, timeout: Duration = .seconds(15),
               _ condition: () throws -> Bool) async throws {
  let deadline = ContinuousClock.now + timeout
  while try !condition() {
    if ContinuousClock.now >= deadline { throw CLIError("timed out waiting: \(what)") }
    try await Task.sleep(for: .milliseconds(10))
  }
}
