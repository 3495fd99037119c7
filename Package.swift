// swift-tools-version:6.0
// The Swift package: the C core (CHyperdown, compiled from the same CSources as the C build) and
// the Swift API over it.
import PackageDescription

let package = Package(
  name: "Hyperdown",
  products: [
    .library(name: "Hyperdown", targets: ["Hyperdown"])
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
    .target(name: "Hyperdown", dependencies: ["CHyperdown"]),
    .testTarget(name: "HyperdownTests", dependencies: ["Hyperdown"]),
  ],
  cLanguageStandard: .c11
)
