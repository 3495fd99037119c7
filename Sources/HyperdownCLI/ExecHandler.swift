import Foundation
import Hyperdown

/// `listen --exec CMD`: runs CMD for each event and completes the event by CMD's exit status.
struct ExecHandler: Sendable {
  /// The status that rejects an event at once (a dead letter), whatever its attempts.
  static let rejectStatus: Int32 = 100

  let command: String
  let timeout: Duration

  /// Runs the command with `line` on its stdin; prints `line` once the event is consumed.
  func handle(_ event: Event, line: String) async {
    let outcome = await ExecProcess.run(command, input: Array((line + "\n").utf8), timeout: timeout)
    let detail = outcome.stderrFirstLine.isEmpty ? "" : ": \(outcome.stderrFirstLine)"
    switch outcome.status {
    case .exited(0):
      Output.line(line)
      event.complete()
    case .exited(Self.rejectStatus):
      event.reject(reason: "exit \(Self.rejectStatus)\(detail)")
    case .exited(let status):
      event.fail(reason: "exit \(status)\(detail)")
    case .signaled(let signal):
      event.fail(reason: "killed by signal \(signal)\(detail)")
    case .timedOut:
      event.fail(reason: "still running after \(timeout.secondsText) s: killed\(detail)")
    case .cancelled:
      event.fail(reason: "listen stopped while the command ran")
    case .spawnFailed(let why):
      event.fail(reason: "cannot run /bin/sh: \(why)")
    }
  }
}

extension Duration {
  /// Seconds as the user gave them: "30", "0.5".
  var secondsText: String {
    let ms = components.seconds * 1000 + components.attoseconds / 1_000_000_000_000_000
    return ms % 1000 == 0 ? "\(ms / 1000)" : String(Double(ms) / 1000)
  }
}
