//! `keyledger rebuild`.

use clap::Args;

use super::DataDir;

#[derive(Args)]
pub struct RebuildArgs {
    #[command(flatten)]
    data: DataDir,
}

pub fn rebuild(_args: RebuildArgs) -> anyhow::Result<()> {
    anyhow::bail!("rebuild is not built yet")
}
