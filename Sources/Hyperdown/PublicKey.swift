import CHyperdown

/// A peer's identity: a 32-byte Ed25519 public key.
///
/// A server adds events *for* a public key; a client authenticates with the key pair whose public
/// half it is. The initializers check that the bytes are a valid Ed25519 point, so a value of this
/// type is always usable as a peer identity. It encodes as lower-case hex (also in `Codable`).
public struct PublicKey: Sendable, Hashable, Codable, CustomStringConvertible {
  /// The 32 bytes of the key.
  public let bytes: [UInt8]

  /// A public key from its 32 bytes.
  /// - Throws: ``HyperdownError`` `EINVAL` for another length, `EKEY` for bytes that are not a
  ///   valid Ed25519 point.
  public init(_ bytes: [UInt8]) throws {
    guard bytes.count == Int(HD_PUBLICKEY_BYTES) else {
      throw HyperdownError(code: HyperdownError.invalidArgument,
                           message: "a public key is \(HD_PUBLICKEY_BYTES) bytes, got \(bytes.count)")
    }
    try HyperdownError.check(hd_publickey_check(bytes))
    self.bytes = bytes
  }

  /// A public key from 64 hexadecimal digits (either case).
  /// - Throws: ``HyperdownError`` `EHEX` for anything that is not 64 hex digits, `EKEY` for an
  ///   invalid point.
  public init(hex: String) throws {
    try self.init(try Hex.decode(hex, count: Int(HD_PUBLICKEY_BYTES)))
  }

  /// Bytes the core already checked (keys handed out by the core).
  init(trusted bytes: [UInt8]) { self.bytes = bytes }

  /// Bytes at a pointer the core handed to a callback (32 bytes).
  init(pointer: UnsafePointer<UInt8>) {
    self.bytes = Array(UnsafeBufferPointer(start: pointer, count: Int(HD_PUBLICKEY_BYTES)))
  }

  /// The key in lower-case hex (64 digits).
  public var hex: String { Hex.encode(bytes) }

  /// The key in lower-case hex.
  public var description: String { hex }

  /// Decodes the key from a hex string.
  public init(from decoder: any Decoder) throws {
    let container = try decoder.singleValueContainer()
    try self.init(hex: try container.decode(String.self))
  }

  /// Encodes the key as a hex string.
  public func encode(to encoder: any Encoder) throws {
    var container = encoder.singleValueContainer()
    try container.encode(hex)
  }
}

extension KeyPair {
  /// The public half of the pair as a ``PublicKey``: the identity peers know this pair by.
  public var identity: PublicKey { PublicKey(trusted: publicKey) }
}
