import Foundation
import Hyperdown

#if canImport(Glibc)
import Glibc
#endif

/// The key file: a JSON object with lower-case hex fields (docs/swift.md).
///
///     {"type": "hyperdown-keypair", "publicKey": "<64 hex>", "seed": "<64 hex>"}
///
/// Any one of the three forms is accepted on reading: `seed` (32 bytes), `secretKey` (libsodium's
/// 64 bytes) or `scalar` with `publicKey` (keypear's form). When `publicKey` is present it must
/// match. `keygen` writes `seed` and `publicKey` (or `scalar` and `publicKey` when imported).
struct KeyFile: Codable {
  var type: String? = "hyperdown-keypair"
  var publicKey: String?
  var seed: String?
  var secretKey: String?
  var scalar: String?

  /// The key pair in the file at `path`. A file that its group or others may read or write (mode
  /// wider than 0600) is refused unless `allowInsecure` (`--allow-insecure-key-file`): a secret
  /// key others can read is no longer the server's alone.
  static func read(_ path: String, allowInsecure: Bool = false) throws -> KeyPair {
    if !allowInsecure {
      var info = stat()
      if stat(path, &info) == 0 && info.st_mode & 0o077 != 0 {
        let mode = String(info.st_mode & 0o777, radix: 8)
        throw CLIError("key file \(path) is open to its group or others (mode 0\(mode)): chmod 600 \(path), or pass --allow-insecure-key-file")
      }
    }
    let data: Data
    do {
      data = try Data(contentsOf: URL(fileURLWithPath: path))
    } catch {
      let reason = FileManager.default.fileExists(atPath: path) ? "cannot read it" : "no such file"
      throw CLIError("cannot read key file \(path): \(reason)")
    }
    let file: KeyFile
    do {
      file = try JSONDecoder().decode(KeyFile.self, from: data)
    } catch {
      throw CLIError("key file \(path) is not a hyperdown key file (JSON with hex fields)")
    }
    do {
      let kp: KeyPair
      if let seed = file.seed {
        kp = try KeyPair(seed: try Hex.decode(seed, count: 32))
      } else if let secretKey = file.secretKey {
        kp = try KeyPair(secretKey: try Hex.decode(secretKey, count: 64))
      } else if let scalar = file.scalar, let publicKey = file.publicKey {
        kp = try KeyPair(scalarHex: scalar, publicKeyHex: publicKey)
      } else {
        throw CLIError("key file \(path) holds no key (seed, secretKey, or scalar and publicKey)")
      }
      if let publicKey = file.publicKey, publicKey.lowercased() != Hex.encode(kp.publicKey) {
        throw CLIError("key file \(path): publicKey does not belong to its secret")
      }
      return kp
    } catch let error as HyperdownError {
      throw CLIError("key file \(path): \(error.line)")
    }
  }

  /// Writes the file with mode 0600: refuses to replace an existing file unless `force`.
  static func write(_ file: KeyFile, to path: String, force: Bool) throws {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
    let bytes = Array(try encoder.encode(file)) + [0x0A]
    let target = force ? path + ".tmp-\(getpid())" : path
    let fd = open(target, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
    if fd < 0 {
      let e = errno
      if e == EEXIST { throw CLIError("key file \(path) exists (use --force to replace it)") }
      throw CLIError("cannot create key file \(path): \(String(cString: strerror(e)))")
    }
    var ok = fchmod(fd, 0o600) == 0
    ok = ok && bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) } == bytes.count
    ok = ok && fsync(fd) == 0
    let e = errno
    close(fd)
    if ok && force && rename(target, path) != 0 { ok = false }
    if !ok {
      unlink(target)
      throw CLIError("cannot write key file \(path): \(String(cString: strerror(e)))")
    }
  }
}
