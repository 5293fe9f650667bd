//! rackd: the node routing daemon.

fn main() -> anyhow::Result<()> {
    Ok(())
}
