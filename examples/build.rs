//! Generates the `helloworld` service from `proto/helloworld.proto`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    rpc_build::compile_protos(&["proto/helloworld.proto"], &["proto"])?;
    Ok(())
}
