//! `keyledger audit log` and `keyledger audit state`.

use clap::Args;

use super::DataDir;

#[derive(Args)]
pub struct LogArgs {
    #[command(flatten)]
    data: DataDir,
}

#[derive(Args)]
pub struct StateArgs {
    #[command(flatten)]
    data: DataDir,
}

pub fn log(_args: LogArgs) -> anyhow::Result<()> {
    anyhow::bail!("audit log is not built yet")
}

pub fn state(_args: StateArgs) -> anyhow::Result<()> {
    anyhow::bail!("audit state is not built yet")
}
