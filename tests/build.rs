//! Compiles `proto/echo.proto` for the mock gRPC application, with the protoc
//! binary vendored as a build dependency so no system protoc is needed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    // prost-build reads PROTOC; build scripts run single-threaded, so setting it
    // here races with nothing.
    std::env::set_var("PROTOC", protoc);
    tonic_prost_build::configure().compile_protos(&["proto/echo.proto"], &["proto"])?;
    Ok(())
}
