import Testing

@testable import Hyperdown

@Suite struct KeyPairTests {
  // The original example's three key pairs (keypear form).
  static let exampleKeys = [
    ("808a6e175b246bc93d4adaada45d49c031296efb36da7fdf3c5128d3eb46fd5e", "9b0e5bf749a3fd55ca5d08b225962bae6c0c826d9822a79e36b1871b50da82fe"),
    ("684e14316d8f379829ee5d1b883dffd2cf123f2987b8658353ae740ed8758565", "09f9cb2e6097bab4936696c7fb2e80c52ecc7e7a0dfe67274d93198e785c1558"),
    ("b0cf93c3f3589ea5e7a09b752e7b6492e6e331661da8fe88854d692aec59114f", "4cce6d17f4000b19b9f752fb7c185a56cff16d86f0cda8673e5ab6baed9e7171"),
  ]

  @Test func originalExampleKeysLoad() throws {
    for (scalar, pk) in Self.exampleKeys {
      let kp = try KeyPair(scalarHex: scalar, publicKeyHex: pk)
      #expect(Hex.encode(kp.publicKey) == pk)
    }
  }

  @Test func mismatchedPairIsRefused() {
    let (scalar, _) = Self.exampleKeys[0]
    let (_, otherPublic) = Self.exampleKeys[1]
    #expect(throws: HyperdownError.self) { try KeyPair(scalarHex: scalar, publicKeyHex: otherPublic) }
    do {
      _ = try KeyPair(scalarHex: scalar, publicKeyHex: otherPublic)
    } catch let error as HyperdownError {
      #expect(error.name == "EKEY")
      #expect(error.message.contains("does not belong"))
    } catch {
      Issue.record("unexpected \(error)")
    }
  }

  @Test func seedAndSecretKeyFormsAgree() throws {
    let seed = (0..<32).map { UInt8($0) }
    let a = try KeyPair(seed: seed)
    let b = try KeyPair(secretKey: seed + a.publicKey)
    #expect(a == b)
    #expect(try KeyPair.generate() != a)
  }

  @Test func badHexIsRefused() {
    #expect(throws: HyperdownError.self) { try Hex.decode("zz", count: 1) }
  }

  @Test func topicKeysDifferByName() throws {
    #expect(try Topic.key(forFolderName: "topic") != Topic.key(forFolderName: "other"))
    #expect(try Topic.key(forFolderName: "topic").count == 32)
  }

  @Test func versionMatches() throws {
    try Version.check()
    #expect(Version.abi == 1)
  }
}
