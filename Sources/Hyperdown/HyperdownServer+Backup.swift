import CHyperdown

extension HyperdownServer {
  /// Writes a consistent copy of the server's store to `path`, a new file, and returns once it
  /// is durable. The copy is marked as a backup: a server started on a folder restored from it
  /// knows it was restored, and its clients that saw later events get them told apart from the
  /// new ones (docs/OPERATIONS.md). The server goes on serving meanwhile.
  /// - Throws: ``HyperdownError``: `EINVAL` if `path` exists, `EIO`, `ENOSPC`, `ECLOSED`...
  public func backup(to path: String) async throws {
    try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
      let box = Completion(continuation).retainedPointer()
      do {
        try handle.with { h in
          try HyperdownError.check(hd_server_backup(h, path, { ctx, status in
            Completion<Void>.take(ctx)!.resume(status: status, returning: ())
          }, box))
        }
      } catch {
        Completion<Void>.release(box)
        continuation.resume(throwing: error)
      }
    }
  }

  /// The same for the store in `dataDirectory` while no server has it open; blocks until the
  /// copy is durable.
  /// - Throws: ``HyperdownError``: `EBUSY` if a server has the folder open (back up through it),
  ///   `ENOTFOUND` if the folder holds no store, `EINVAL` if `path` exists...
  public static func backup(dataDirectory: String, to path: String) throws {
    try HyperdownError.check(hd_server_backup_folder(dataDirectory, path))
  }
}
