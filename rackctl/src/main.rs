//! rackctl: the rackd CLI.

fn main() -> anyhow::Result<()> {
    Ok(())
}
