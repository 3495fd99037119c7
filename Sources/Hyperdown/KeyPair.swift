import CHyperdown

/// An Ed25519 identity: the public key and the clamped secret scalar. Every initializer checks
/// that the two belong together (`scalar·G == publicKey`) and throws ``HyperdownError`` with
/// code `EKEY` if they do not.
public struct KeyPair: Sendable, Equatable {
  /// The Ed25519 public key (32 bytes): the peer's identity.
  public let publicKey: [UInt8]
  /// The clamped Ed25519 secret scalar (32 bytes).
  public let scalar: [UInt8]

  /// A new random key pair.
  public static func generate() throws -> KeyPair {
    var kp = hd_keypair_t()
    try HyperdownError.check(hd_keypair_generate(&kp))
    return KeyPair(kp)
  }

  /// From a 32-byte seed (the RFC 8032 private key).
  public init(seed: [UInt8]) throws {
    guard seed.count == Int(HD_SEED_BYTES) else {
      throw HyperdownError(code: HyperdownError.invalidArgument, message: "a seed is \(HD_SEED_BYTES) bytes, got \(seed.count)")
    }
    var kp = hd_keypair_t()
    try HyperdownError.check(hd_keypair_from_seed(&kp, seed))
    self.init(kp)
  }

  /// From libsodium's 64-byte secret key (seed followed by the public key).
  public init(secretKey: [UInt8]) throws {
    guard secretKey.count == Int(HD_SECRETKEY_BYTES) else {
      throw HyperdownError(code: HyperdownError.invalidArgument, message: "a secret key is \(HD_SECRETKEY_BYTES) bytes, got \(secretKey.count)")
    }
    var kp = hd_keypair_t()
    try HyperdownError.check(hd_keypair_from_secret_key(&kp, secretKey))
    self.init(kp)
  }

  /// From a keypear-style pair: the clamped secret scalar and the public key.
  public init(scalar: [UInt8], publicKey: [UInt8]) throws {
    guard scalar.count == Int(HD_SCALAR_BYTES), publicKey.count == Int(HD_PUBLICKEY_BYTES) else {
      throw HyperdownError(code: HyperdownError.invalidArgument, message: "scalar and public key are 32 bytes each")
    }
    var kp = hd_keypair_t()
    try HyperdownError.check(hd_keypair_from_scalar(&kp, scalar, publicKey))
    self.init(kp)
  }

  /// From the hex of a scalar and a public key, as the original's example writes them.
  public init(scalarHex: String, publicKeyHex: String) throws {
    try self.init(scalar: try Hex.decode(scalarHex, count: 32), publicKey: try Hex.decode(publicKeyHex, count: 32))
  }

  init(_ kp: hd_keypair_t) {
    var copy = kp
    publicKey = withUnsafeBytes(of: &copy.public_key) { Array($0) }
    scalar = withUnsafeBytes(of: &copy.scalar) { Array($0) }
  }

  /// The C form, for calls into the core.
  func withCKeyPair<R>(_ body: (UnsafePointer<hd_keypair_t>) throws -> R) rethrows -> R {
    var kp = hd_keypair_t()
    withUnsafeMutableBytes(of: &kp.public_key) { $0.copyBytes(from: publicKey) }
    withUnsafeMutableBytes(of: &kp.scalar) { $0.copyBytes(from: scalar) }
    defer { hd_keypair_wipe(&kp) }
    return try body(&kp)
  }
}

/// Runs `body` with the C form of `keyPair`, or with NULL for `nil`.
func withOptionalCKeyPair<R>(_ keyPair: KeyPair?, _ body: (UnsafePointer<hd_keypair_t>?) throws -> R) rethrows -> R {
  guard let keyPair else { return try body(nil) }
  return try keyPair.withCKeyPair { try body($0) }
}

/// Hexadecimal helpers with the core's rules (exact length, either case).
public enum Hex {
  /// Lower-case hex of `bytes`.
  public static func encode(_ bytes: [UInt8]) -> String {
    var out = [CChar](repeating: 0, count: bytes.count * 2 + 1)
    _ = hd_hex_encode(&out, out.count, bytes, bytes.count)
    return String(decoding: out.dropLast().map { UInt8(bitPattern: $0) }, as: UTF8.self)
  }

  /// Exactly `count` bytes from `hex` (2 × `count` digits, either case).
  /// - Throws: ``HyperdownError`` `EHEX` for any other length or a non-hex digit (the detail
  ///   names its position).
  public static func decode(_ hex: String, count: Int) throws -> [UInt8] {
    var out = [UInt8](repeating: 0, count: count)
    try HyperdownError.check(hd_hex_decode(&out, count, hex))
    return out
  }
}

/// The topic a folder name stands for (BLAKE2b-256 over a fixed context and the name).
public enum Topic {
  /// The 32-byte topic key of a folder name; peers must share it to complete a handshake.
  public static func key(forFolderName name: String) throws -> [UInt8] {
    var out = [UInt8](repeating: 0, count: Int(HD_TOPIC_BYTES))
    let utf8 = Array(name.utf8)
    try utf8.withUnsafeBufferPointer { buf in
      try buf.withMemoryRebound(to: CChar.self) { chars in
        _ = try HyperdownError.check(hd_topic_key(&out, chars.baseAddress, chars.count))
      }
    }
    return out
  }
}

/// Versions of the loaded core.
public enum Version {
  /// The loaded core's release version, e.g. `"0.1.0"`.
  public static var string: String { String(cString: hd_version_string()) }
  /// The loaded core's version as `0xMMmmpp` (`hd_version`; compare with the header's
  /// `HD_VERSION_HEX`).
  public static var number: UInt32 { UInt32(hd_version()) }
  /// The loaded core's ABI version (the SONAME's number).
  public static var abi: Int { Int(hd_abi_version()) }
  /// Throws if the loaded library does not match the header this module was built with.
  public static func check() throws { try HyperdownError.check(hd_check_version(HD_ABI_VERSION, UInt32(HD_VERSION_HEX))) }
}
