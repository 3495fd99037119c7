import Foundation

/// JSON checks and fragments for the lines the tool prints.
enum JSONText {
  /// Whether `bytes` are one JSON value (fragments allowed).
  static func isValid(_ bytes: [UInt8]) -> Bool {
    (try? JSONSerialization.jsonObject(with: Data(bytes), options: [.fragmentsAllowed])) != nil
  }

  /// The payload as it goes into `{"id": N, "data": ...}`: the JSON text itself on one line (a
  /// raw newline can only be whitespace in valid JSON), else a JSON string of the UTF-8 text, else
  /// nil (not text).
  static func dataField(_ payload: [UInt8]) -> (key: String, value: String) {
    if isValid(payload) {
      let text = String(decoding: payload, as: UTF8.self)
        .replacingOccurrences(of: "\r", with: " ").replacingOccurrences(of: "\n", with: " ")
      return ("data", text)
    }
    if let text = String(validating: payload, as: UTF8.self) {
      return ("data", quote(text))
    }
    return ("dataBase64", quote(Data(payload).base64EncodedString()))
  }

  static func quote(_ s: String) -> String {
    let data = try! JSONSerialization.data(withJSONObject: s, options: [.fragmentsAllowed, .withoutEscapingSlashes])
    return String(decoding: data, as: UTF8.self)
  }
}
