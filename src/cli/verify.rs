//! `keyledger audit verify` and `keyledger audit checkpoint`.

use clap::Args;

use super::DataDir;

#[derive(Args)]
pub struct VerifyArgs {
    #[command(flatten)]
    data: DataDir,
}

#[derive(Args)]
pub struct CheckpointArgs {
    #[command(flatten)]
    data: DataDir,
}

pub fn verify(_args: VerifyArgs) -> anyhow::Result<()> {
    anyhow::bail!("audit verify is not built yet")
}

pub fn checkpoint(_args: CheckpointArgs) -> anyhow::Result<()> {
    anyhow::bail!("audit checkpoint is not built yet")
}
