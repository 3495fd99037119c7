import ArgumentParser
import Hyperdown

/// A failure the tool reports as one line on stderr before it exits with status 1.
struct CLIError: Error, CustomStringConvertible {
  let description: String
  init(_ description: String) { self.description = description }
}

/// Runs a command body; any error becomes one line on stderr and exit status 1.
func reportingErrors(_ body: () async throws -> Void) async throws {
  do {
    try await body()
  } catch let error as CLIError {
    Output.error(error.description)
    throw ExitCode.failure
  } catch let error as HyperdownError {
    Output.error(error.line)
    throw ExitCode.failure
  } catch let code as ExitCode {
    throw code
  } catch {
    Output.error("\(error)")
    throw ExitCode.failure
  }
}
