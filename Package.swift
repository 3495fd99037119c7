// swift-tools-version:6.0
// The Swift package: the C core (CHyperdown, compiled from the same CSources as the C build), the
// Swift API over it (Hyperdown), the `hyperdown` command-line tool and the tests.
import PackageDescription

let package = Package(
  name: "Hyperdown",
  platforms: [.macOS(.v15)],
  products: [
    .library(name: "Hyperdown", targets: ["Hyperdown"]),
    // The binary is named `hyperdown`; its target has another name so that it never collides
    // with the `Hyperdown` module on a case-insensitive file system.
    .executable(name: "hyperdown", targets: ["HyperdownCLI"]),
  ],
  dependencies: [
    .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
    .package(url: "https://github.com/apple/swift-log", from: "1.6.0"),
    .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.6.0"),
  ],
  targets: [
    .target(
      name: "CHyperdown",
      path: ".",
      sources: ["CSources"],
      publicHeadersPath: "include",
      cSettings: [
        .headerSearchPath("CSources"),
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
      ],
      path: "Sources/hyperdown"
    ),
    .testTarget(
      name: "HyperdownTests",
      dependencies: [
        "Hyperdown",
        .product(name: "Logging", package: "swift-log"),
        .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
      ]
    ),
    .testTarget(name: "CLITests", dependencies: ["HyperdownCLI"]),
  ],
  cLanguageStandard: .c11
)
