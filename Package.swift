// swift-tools-version:6.0
// The Swift package: the C core (CHyperdown, compiled from the same CSources as the C build), the
// Swift API over it (Hyperdown), the `hyperdown` command-line tool and the tests.
import Foundation
import PackageDescription

// The core's layer folders, bottom up, from CSources/LAYERS (the C build enforces the layering;
// here every layer is on the header search path).
let coreLayers: [String] = {
  let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
  let text = (try? String(contentsOf: root.appendingPathComponent("CSources/LAYERS"), encoding: .utf8)) ?? ""
  return text.split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }
    .filter { !$0.isEmpty && !$0.hasPrefix("#") }
    .flatMap { $0.split(separator: "|").map(String.init) }
}()

let package = Package(
  name: "Hyperdown",
  products: [
    .library(name: "Hyperdown", targets: ["Hyperdown"]),
    // The binary is named `hyperdown`; its target, and so its folder Sources/HyperdownCLI, has
    // another name so that neither collides with the `Hyperdown` module (Sources/Hyperdown) on a
    // case-insensitive file system.
    .executable(name: "hyperdown", targets: ["HyperdownCLI"]),
  ],
  dependencies: [
    .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
    .package(url: "https://github.com/apple/swift-log", from: "1.16.0"),
    .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.6.0"),
    // The library's metrics go through swift-metrics' API (a service bootstraps its backend, e.g.
    // swift-prometheus); the package brings no backend of its own.
    .package(url: "https://github.com/apple/swift-metrics", from: "2.5.0"),
  ],
  targets: [
    .target(
      name: "CHyperdown",
      path: ".",
      exclude: ["CSources/LAYERS"],
      sources: ["CSources"],
      publicHeadersPath: "include",
      cSettings: coreLayers.map { .headerSearchPath("CSources/\($0)") } + [
        .define("HD_BUILDING"),
        .define("_GNU_SOURCE"),
      ],
      linkerSettings: [
        .linkedLibrary("uv"),
        .linkedLibrary("sodium"),
        .linkedLibrary("sqlite3"),
        .linkedLibrary("pthread"),
      ]
    ),
    .target(
      name: "Hyperdown",
      dependencies: [
        "CHyperdown",
        .product(name: "Logging", package: "swift-log"),
        .product(name: "CoreMetrics", package: "swift-metrics"),
        .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
      ]
    ),
    .executableTarget(
      name: "HyperdownCLI",
      dependencies: [
        "Hyperdown",
        .product(name: "ArgumentParser", package: "swift-argument-parser"),
        .product(name: "Logging", package: "swift-log"),
        .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
      ]
    ),
    .testTarget(
      name: "HyperdownTests",
      dependencies: [
        "Hyperdown",
        .product(name: "Logging", package: "swift-log"),
        .product(name: "CoreMetrics", package: "swift-metrics"),
        .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
      ]
    ),
    .testTarget(name: "CLITests", dependencies: ["HyperdownCLI"]),
  ],
  cLanguageStandard: .c11
)
