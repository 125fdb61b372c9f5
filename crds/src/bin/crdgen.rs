//! Prints the CRDs as YAML: `cargo run -p faultline-crds --bin crdgen > crds/faultline.dev.yaml`.
fn main() -> Result<(), serde_norway::Error> {
    print!("{}", faultline_crds::crds_yaml()?);
    Ok(())
}
