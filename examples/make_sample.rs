//! Writes the shipped sample capture: `cargo run --example make_sample -- tests/data/remcos-sample.pcap`.

fn main() -> std::io::Result<()> {
    let path = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "tests/data/remcos-sample.pcap".into());
    std::fs::write(&path, c2watch::testkit::remcos_sample())?;
    eprintln!("wrote {path}");
    Ok(())
}
