import CHyperdown

/// The core's sizes and limits, as the loaded library states them (the functions the header
/// pairs with its constants, for bindings that cannot read a macro).
public enum Limits {
  /// Bytes of a public key (`hd_publickey_bytes`, 32).
  public static var publicKeyBytes: Int { Int(hd_publickey_bytes()) }
  /// Bytes of a secret scalar (`hd_scalar_bytes`, 32).
  public static var scalarBytes: Int { Int(hd_scalar_bytes()) }
  /// Bytes of a seed (`hd_seed_bytes`, 32).
  public static var seedBytes: Int { Int(hd_seed_bytes()) }
  /// Bytes of a libsodium secret key (`hd_secretkey_bytes`, 64).
  public static var secretKeyBytes: Int { Int(hd_secretkey_bytes()) }
  /// Bytes of a topic key (`hd_topic_bytes`, 32).
  public static var topicBytes: Int { Int(hd_topic_bytes()) }
  /// Longest deduplication or collapse key (`hd_key_max_bytes`, 256).
  public static var keyMaxBytes: Int { Int(hd_key_max_bytes()) }
  /// Longest reason of a failed event (`hd_reason_max_bytes`, 1024).
  public static var reasonMaxBytes: Int { Int(hd_reason_max_bytes()) }
  /// Most users of one fan-out (`hd_fanout_max_users`, 100,000).
  public static var fanoutMaxUsers: Int { Int(hd_fanout_max_users()) }
}
